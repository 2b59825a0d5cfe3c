DROP TABLE pass_run;
DROP TABLE plan_event;
DROP TABLE invoice_line;
DROP TABLE invoice;
DROP TABLE customer_plan_offer;
ALTER TABLE customer_plan DROP CONSTRAINT customer_plan_invoiced_through_fk;
DROP TABLE license_ledger;
DROP TABLE customer_plan;
DROP TABLE customer;
