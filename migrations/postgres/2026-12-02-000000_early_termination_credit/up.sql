-- An immediate tier upgrade ends the old plan and credits its unused part on the new plan's
-- first invoice: the credit waits here, in cents, until that invoice is written.
ALTER TABLE customer_plan ADD COLUMN credit_cents BIGINT NOT NULL DEFAULT 0;

-- The credit is an invoice line of its own kind.
ALTER TABLE invoice_line DROP CONSTRAINT invoice_line_kind_check;
ALTER TABLE invoice_line ADD CONSTRAINT invoice_line_kind_check
    CHECK (kind IN ('renewal', 'addition', 'flat_discount', 'credit'));
