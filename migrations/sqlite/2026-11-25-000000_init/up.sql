-- The plan model (billing-semantics.md §1) plus plan-invoicer's write-ahead invoices, outbox,
-- leases and needs-attention columns (Part P). Every timestamp is timestamptz (UTC).

CREATE TABLE customer (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    external_ref TEXT UNIQUE,
    name TEXT NOT NULL CHECK (name <> ''),
    email TEXT,
    kind TEXT NOT NULL DEFAULT 'cloud' CHECK (kind IN ('cloud', 'self_hosted')),
    stripe_customer_id TEXT UNIQUE,
    sponsorship_pending BOOLEAN NOT NULL DEFAULT FALSE,
    monthly_discounted_price BIGINT NOT NULL DEFAULT 0 CHECK (monthly_discounted_price >= 0),
    annual_discounted_price BIGINT NOT NULL DEFAULT 0 CHECK (annual_discounted_price >= 0),
    minimum_licenses INTEGER CHECK (minimum_licenses > 0),
    required_plan_tier SMALLINT,
    exempt_from_license_number_check BOOLEAN NOT NULL DEFAULT FALSE,
    flat_discount BIGINT NOT NULL DEFAULT 2000 CHECK (flat_discount >= 0),
    flat_discounted_months INTEGER NOT NULL DEFAULT 0 CHECK (flat_discounted_months >= 0),
    last_usage_report_at TEXT,
    seat_count INTEGER CHECK (seat_count >= 0),
    created_at TEXT NOT NULL
);

CREATE TABLE customer_plan (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id BIGINT NOT NULL REFERENCES customer (id) ON DELETE CASCADE,
    tier SMALLINT NOT NULL CHECK (tier IN (1, 2, 3, 4, 100, 101, 102, 103, 104, 105)),
    status SMALLINT NOT NULL DEFAULT 1 CHECK (status IN (1, 2, 3, 4, 5, 6, 7, 8, 11, 12)),
    billing_schedule SMALLINT NOT NULL CHECK (billing_schedule IN (1, 2)),
    fixed_price BIGINT CHECK (fixed_price >= 0),
    price_per_license BIGINT CHECK (price_per_license >= 0),
    discount TEXT,
    automanage_licenses BOOLEAN NOT NULL DEFAULT FALSE,
    charge_automatically BOOLEAN NOT NULL DEFAULT FALSE,
    billing_cycle_anchor TEXT NOT NULL,
    next_invoice_date TEXT,
    invoiced_through_id BIGINT REFERENCES license_ledger (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    end_date TEXT,
    invoicing_status SMALLINT NOT NULL DEFAULT 1 CHECK (invoicing_status IN (1, 2, 3)),
    stale_audit_log_data_email_sent BOOLEAN NOT NULL DEFAULT FALSE,
    reminder_to_review_plan_email_sent BOOLEAN NOT NULL DEFAULT FALSE,
    -- D5: the lease that replaces Zulip's manual repair of STARTED plans.
    lease_owner TEXT,
    lease_expires_at TEXT,
    -- D8: why invoicing is blocked, and the retry bookkeeping.
    needs_attention TEXT,
    error_count INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_retry_at TEXT,
    created_at TEXT NOT NULL,
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
CREATE INDEX customer_plan_next_invoice_date ON customer_plan (next_invoice_date);
CREATE INDEX customer_plan_customer_id ON customer_plan (customer_id);
CREATE UNIQUE INDEX unique_never_started_plan_customer ON customer_plan (customer_id) WHERE status = 12;
-- Zulip leaves this to the application (§6.13); here the database enforces it.
CREATE UNIQUE INDEX unique_live_plan_customer ON customer_plan (customer_id) WHERE status < 10;

CREATE TABLE license_ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plan_id BIGINT NOT NULL REFERENCES customer_plan (id) ON DELETE CASCADE,
    is_renewal BOOLEAN NOT NULL DEFAULT FALSE,
    event_time TEXT NOT NULL,
    licenses INTEGER NOT NULL CHECK (licenses >= 0),
    licenses_at_next_renewal INTEGER CHECK (licenses_at_next_renewal >= 0)
);
CREATE INDEX license_ledger_plan_id ON license_ledger (plan_id, id);

CREATE INDEX customer_plan_invoiced_through ON customer_plan (invoiced_through_id);

CREATE TABLE customer_plan_offer (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id BIGINT NOT NULL REFERENCES customer (id) ON DELETE CASCADE,
    fixed_price BIGINT NOT NULL CHECK (fixed_price >= 0),
    tier SMALLINT NOT NULL CHECK (tier IN (1, 2, 103, 104)),
    status SMALLINT NOT NULL DEFAULT 1 CHECK (status IN (1, 2)),
    sent_invoice_id TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX customer_plan_offer_customer_id ON customer_plan_offer (customer_id);
CREATE UNIQUE INDEX unique_configured_plan_offer_customer ON customer_plan_offer (customer_id) WHERE status = 1;

-- D6: write-ahead invoices. Stored with their lines before any Stripe call.
CREATE TABLE invoice (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plan_id BIGINT NOT NULL REFERENCES customer_plan (id) ON DELETE CASCADE,
    customer_id BIGINT NOT NULL REFERENCES customer (id) ON DELETE CASCADE,
    event_time TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent')),
    collection_method TEXT NOT NULL CHECK (collection_method IN ('charge_automatically', 'send_invoice')),
    days_until_due INTEGER,
    total_cents BIGINT NOT NULL,
    stripe_invoice_id TEXT UNIQUE,
    stripe_finalized BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    CONSTRAINT unique_invoice_per_plan_event_time UNIQUE (plan_id, event_time)
);
CREATE INDEX invoice_customer_id ON invoice (customer_id);
CREATE INDEX invoice_pending ON invoice (plan_id) WHERE status = 'pending';

CREATE TABLE invoice_line (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_id BIGINT NOT NULL REFERENCES invoice (id) ON DELETE CASCADE,
    plan_id BIGINT NOT NULL REFERENCES customer_plan (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('renewal', 'addition', 'flat_discount')),
    description TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    unit_amount_cents BIGINT NOT NULL,
    amount_cents BIGINT NOT NULL,
    amount_only BOOLEAN NOT NULL DEFAULT FALSE,
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    ledger_entry_id BIGINT REFERENCES license_ledger (id) ON DELETE CASCADE,
    stripe_invoice_item_id TEXT UNIQUE,
    CONSTRAINT unique_line_position UNIQUE (invoice_id, position),
    CHECK (period_start < period_end)
);
CREATE INDEX invoice_line_plan_id ON invoice_line (plan_id);
-- D6: one renewal line per (plan, period start), one line per ledger entry that starts it.
CREATE UNIQUE INDEX unique_renewal_line_per_period ON invoice_line (plan_id, period_start) WHERE kind = 'renewal';
CREATE UNIQUE INDEX unique_line_per_ledger_entry ON invoice_line (ledger_entry_id) WHERE ledger_entry_id IS NOT NULL;

-- Part P.1: the outbox of plan events and notices the host application consumes.
CREATE TABLE plan_event (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    plan_id BIGINT NOT NULL REFERENCES customer_plan (id) ON DELETE CASCADE,
    customer_id BIGINT NOT NULL REFERENCES customer (id) ON DELETE CASCADE,
    old_status SMALLINT,
    new_status SMALLINT,
    old_tier SMALLINT,
    new_tier SMALLINT,
    message TEXT,
    event_time TEXT NOT NULL,
    created_at TEXT NOT NULL,
    consumed_at TEXT
);
CREATE INDEX plan_event_plan_id ON plan_event (plan_id);
CREATE INDEX plan_event_unconsumed ON plan_event (id) WHERE consumed_at IS NULL;

-- One row per pass that wrote (not dry runs), for `status` and monitoring.
CREATE TABLE pass_run (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    worker TEXT NOT NULL,
    now TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    plans_considered INTEGER NOT NULL DEFAULT 0,
    plans_invoiced INTEGER NOT NULL DEFAULT 0,
    invoices INTEGER NOT NULL DEFAULT 0,
    needs_attention INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0
);
