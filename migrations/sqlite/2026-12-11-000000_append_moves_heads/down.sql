CREATE TRIGGER change_log_moves_head AFTER INSERT ON change_log WHEN NEW.customer_id IS NULL
BEGIN
    UPDATE change_head SET last_id = NEW.id, hash = NEW.hash WHERE chain = 0;
END;
CREATE TRIGGER change_log_moves_customer_head AFTER INSERT ON change_log
WHEN NEW.customer_id IS NOT NULL
BEGIN
    UPDATE customer SET change_last_id = NEW.id, change_hash = NEW.hash
    WHERE id = NEW.customer_id;
END;
