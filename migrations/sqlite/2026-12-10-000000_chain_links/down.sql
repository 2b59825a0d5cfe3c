CREATE INDEX change_log_customer ON change_log (customer_id, id);
ALTER TABLE change_log DROP COLUMN prev_id;
