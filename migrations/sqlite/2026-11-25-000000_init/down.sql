DROP TABLE pass_run;
DROP TABLE plan_event;
DROP TABLE invoice_line;
DROP TABLE invoice;
DROP TABLE customer_plan_offer;
DROP TABLE customer_plan;
DROP TABLE license_ledger;
DROP TABLE customer;
