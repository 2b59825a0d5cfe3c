ALTER TABLE customer_plan DROP COLUMN claim_token;
DROP TABLE worker_heartbeat;
