DROP INDEX customer_plan_customer_id_id;
ALTER TABLE customer_plan DROP COLUMN claim_token;
DROP TABLE worker_heartbeat;
