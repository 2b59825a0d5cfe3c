DROP TRIGGER change_log_moves_customer_head;
DROP TRIGGER change_log_moves_head;
INSERT INTO change_head (chain, last_id, hash)
SELECT id, change_last_id, change_hash FROM customer WHERE change_last_id <> 0;
CREATE TRIGGER change_log_moves_head AFTER INSERT ON change_log
BEGIN
    INSERT INTO change_head (chain, last_id, hash)
    VALUES (coalesce(NEW.customer_id, 0), NEW.id, NEW.hash)
    ON CONFLICT (chain) DO UPDATE SET last_id = excluded.last_id, hash = excluded.hash;
END;
ALTER TABLE customer DROP COLUMN change_hash;
ALTER TABLE customer DROP COLUMN change_last_id;
