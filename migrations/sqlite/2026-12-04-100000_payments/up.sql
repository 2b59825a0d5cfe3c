-- What Stripe's webhooks tell of each invoice's payment: one row per local invoice, written
-- only by the webhook handler. The status only moves forward (docs/RULES.md, "Payments").
CREATE TABLE invoice_payment (
    invoice_id INTEGER PRIMARY KEY REFERENCES invoice (id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('open', 'paid', 'void', 'uncollectible')),
    status_at TEXT NOT NULL,
    attempt_count INTEGER NOT NULL DEFAULT 0,
    hosted_invoice_url TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX invoice_payment_status ON invoice_payment (status);

-- Every verified Stripe event, by its id: a redelivery finds its row and changes nothing.
CREATE TABLE stripe_event (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    invoice_id INTEGER,
    outcome TEXT NOT NULL,
    received_at TEXT NOT NULL
);

-- How far `sync-payments` has read Stripe's list of events: the creation time (Unix seconds)
-- of the newest event applied. The next run reads from a little before it.
CREATE TABLE payment_sync (
    name TEXT PRIMARY KEY,
    synced_through INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);

-- The invoices the overdue policy decided to void, written in the same transaction as the
-- decision (and the plan's end): a run cut short voids them on the next run, each once.
CREATE TABLE invoice_void (
    invoice_id INTEGER PRIMARY KEY REFERENCES invoice (id) ON DELETE CASCADE,
    requested_at TEXT NOT NULL,
    voided_at TEXT
);
