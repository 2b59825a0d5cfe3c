-- Fails while credit lines exist (they do not fit the old constraint).
CREATE TABLE invoice_line_new (
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
INSERT INTO invoice_line_new SELECT * FROM invoice_line;
DROP TABLE invoice_line;
ALTER TABLE invoice_line_new RENAME TO invoice_line;
CREATE INDEX invoice_line_plan_id ON invoice_line (plan_id);
CREATE UNIQUE INDEX unique_renewal_line_per_period ON invoice_line (plan_id, period_start) WHERE kind = 'renewal';
CREATE UNIQUE INDEX unique_line_per_ledger_entry ON invoice_line (ledger_entry_id) WHERE ledger_entry_id IS NOT NULL;
ALTER TABLE customer_plan DROP COLUMN credit_cents;
