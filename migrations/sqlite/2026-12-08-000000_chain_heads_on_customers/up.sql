-- A customer's chain head moves onto its row (docs/ARCHITECTURE.md, "Change history"): the
-- writes that append to a customer's chain mostly write the customer's row anyway (a seat
-- report sets its seat count), so moving the head there adds no page to the commit, where a
-- row of `change_head` added one. Chain 0 (the changes of no customer) keeps its row in
-- `change_head`.
ALTER TABLE customer ADD COLUMN change_last_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE customer ADD COLUMN change_hash TEXT NOT NULL
    DEFAULT '0000000000000000000000000000000000000000000000000000000000000000';
UPDATE customer SET change_last_id = h.last_id, change_hash = h.hash
FROM change_head AS h WHERE h.chain = customer.id;
DELETE FROM change_head WHERE chain <> 0;

DROP TRIGGER change_log_moves_head;
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
