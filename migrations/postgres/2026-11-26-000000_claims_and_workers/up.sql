-- Fencing: every claim of a plan takes a new token; a write made for a claim first checks that
-- the plan still carries this worker's owner and token, so a worker whose lease expired under it
-- (and was taken over) stops touching the plan.
ALTER TABLE customer_plan ADD COLUMN claim_token BIGINT NOT NULL DEFAULT 0;

-- The live workers of a fleet: each pass beats here every few seconds, and the Stripe budget is
-- split across the workers seen in the last 15 seconds.
CREATE TABLE worker_heartbeat (
    worker TEXT PRIMARY KEY NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL
);

-- A customer's next due plan is looked up after each of its plans (ORDER BY id LIMIT 1 within
-- one customer): with only the customer index, PostgreSQL's planner walks the primary key
-- instead, through the whole book.
CREATE INDEX customer_plan_customer_id_id ON customer_plan (customer_id, id);
