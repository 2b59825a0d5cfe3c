-- The change history (docs/ARCHITECTURE.md, "Change history"): one row per write, from every
-- surface, in the write's own transaction. `id` is the row's place in the chain, given out by
-- `change_head` (whose row every writer updates first, so writers take their places in commit
-- order); `hash` is SHA-256 over `prev_hash` and the row's content. Rows are never updated or
-- deleted: the triggers refuse it.
CREATE TABLE change_log (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    written_at TEXT NOT NULL,
    actor TEXT NOT NULL,
    on_behalf_of TEXT,
    operation TEXT NOT NULL,
    customer_id INTEGER,
    plan_id INTEGER,
    new_plan_id INTEGER,
    invoice_id INTEGER,
    objects TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL,
    reason TEXT,
    idempotency_key TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX change_log_customer ON change_log (customer_id, id);
CREATE INDEX change_log_plan ON change_log (plan_id, id);
CREATE INDEX change_log_new_plan ON change_log (new_plan_id, id) WHERE new_plan_id IS NOT NULL;
CREATE INDEX change_log_actor ON change_log (actor, id);

CREATE TRIGGER change_log_no_update BEFORE UPDATE ON change_log
BEGIN
    SELECT RAISE(ABORT, 'the change history is append-only: rows cannot be updated');
END;

CREATE TRIGGER change_log_no_delete BEFORE DELETE ON change_log
BEGIN
    SELECT RAISE(ABORT, 'the change history is append-only: rows cannot be deleted');
END;

-- The end of the chain: the last row's id and hash (id 0 and 64 zeros before the first row).
CREATE TABLE change_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_id INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO change_head (id, last_id, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
