-- Each row links to the row before it in its chain (docs/ARCHITECTURE.md, "Change history"):
-- `prev_id`, 0 for a chain's first row. A customer's changes are read by walking its chain from
-- the head on its row, instead of through an index on (customer_id, id): every append wrote a
-- leaf of that index, a different page at every commit (the customer's), and one page of the
-- two the history added to a seat report's commit.
ALTER TABLE change_log ADD COLUMN prev_id INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER change_log_no_update;
UPDATE change_log SET prev_id = l.prev
FROM (
    SELECT id, lag(id, 1, 0) OVER (PARTITION BY customer_id ORDER BY id) AS prev
    FROM change_log
) AS l
WHERE l.id = change_log.id AND l.prev <> 0;
CREATE TRIGGER change_log_no_update BEFORE UPDATE ON change_log
BEGIN
    SELECT RAISE(ABORT, 'the change history is append-only: rows cannot be updated');
END;

DROP INDEX change_log_customer;
