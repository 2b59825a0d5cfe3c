-- PostgreSQL orders timestamptz by time whatever the year, but a year past 9999 has no RFC 3339
-- form: refuse it as SQLite does (the admin commands bound every instant far inside this).
ALTER TABLE customer_plan ADD CONSTRAINT customer_plan_billing_cycle_anchor_four_digit_year CHECK (billing_cycle_anchor < '10000-01-01T00:00:00Z' AND billing_cycle_anchor >= '0001-01-01T00:00:00Z') NOT VALID;
ALTER TABLE customer_plan ADD CONSTRAINT customer_plan_next_invoice_date_four_digit_year CHECK (next_invoice_date < '10000-01-01T00:00:00Z' AND next_invoice_date >= '0001-01-01T00:00:00Z') NOT VALID;
ALTER TABLE customer_plan ADD CONSTRAINT customer_plan_end_date_four_digit_year CHECK (end_date < '10000-01-01T00:00:00Z' AND end_date >= '0001-01-01T00:00:00Z') NOT VALID;
ALTER TABLE license_ledger ADD CONSTRAINT license_ledger_event_time_four_digit_year CHECK (event_time < '10000-01-01T00:00:00Z' AND event_time >= '0001-01-01T00:00:00Z') NOT VALID;
ALTER TABLE invoice ADD CONSTRAINT invoice_event_time_four_digit_year CHECK (event_time < '10000-01-01T00:00:00Z' AND event_time >= '0001-01-01T00:00:00Z') NOT VALID;
