-- Fails while credit lines exist (they do not fit the old constraint).
ALTER TABLE invoice_line DROP CONSTRAINT invoice_line_kind_check;
ALTER TABLE invoice_line ADD CONSTRAINT invoice_line_kind_check
    CHECK (kind IN ('renewal', 'addition', 'flat_discount'));
ALTER TABLE customer_plan DROP COLUMN credit_cents;
