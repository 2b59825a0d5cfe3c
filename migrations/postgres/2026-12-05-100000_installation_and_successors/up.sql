-- This database's installation: a random id made by the first `migrate` (a restored backup
-- keeps it), put into every Stripe idempotency key and into the metadata of every object the
-- worker creates, so that two databases billing through one Stripe account never share a key.
-- Objects that existed before this migration keep the keys they were first sent with (a
-- half-sent invoice finishes under the keys it started with): customers and invoices up to the
-- ids recorded here.
CREATE TABLE installation (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    installation_id TEXT NOT NULL,
    legacy_customers_through BIGINT NOT NULL,
    legacy_invoices_through BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
INSERT INTO installation (singleton, installation_id, legacy_customers_through, legacy_invoices_through, created_at)
VALUES (
    1,
    substr(md5(random()::text || clock_timestamp()::text), 1, 16),
    COALESCE((SELECT MAX(id) FROM customer), 0),
    COALESCE((SELECT MAX(id) FROM invoice), 0),
    now()
);

-- The licenses at next renewal that a plan's newest ledger entry had before a per-license
-- successor was scheduled (which sets them to the successor tier's count): cancelling the
-- successor puts them back.
CREATE TABLE successor_renewal (
    plan_id BIGINT PRIMARY KEY REFERENCES customer_plan (id),
    ledger_entry_id BIGINT NOT NULL,
    licenses_at_next_renewal INTEGER
);
