-- The change history (docs/ARCHITECTURE.md, "Change history"): one row per write, from every
-- surface, in the write's own transaction. `id` is the row's place in the chain, given out by
-- `change_head` (whose row every writer updates first, so writers take their places in commit
-- order); `hash` is SHA-256 over `prev_hash` and the row's content. Rows are never updated or
-- deleted: the triggers refuse it.
CREATE TABLE change_log (
    id BIGINT PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    written_at TIMESTAMPTZ NOT NULL,
    actor TEXT NOT NULL,
    on_behalf_of TEXT,
    operation TEXT NOT NULL,
    customer_id BIGINT,
    plan_id BIGINT,
    new_plan_id BIGINT,
    invoice_id BIGINT,
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

CREATE FUNCTION change_log_refuse() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the change history is append-only: rows cannot be %d', lower(TG_OP);
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER change_log_no_update_or_delete BEFORE UPDATE OR DELETE ON change_log
FOR EACH ROW EXECUTE FUNCTION change_log_refuse();
CREATE TRIGGER change_log_no_truncate BEFORE TRUNCATE ON change_log
FOR EACH STATEMENT EXECUTE FUNCTION change_log_refuse();

-- The end of the chain: the last row's id and hash (id 0 and 64 zeros before the first row).
CREATE TABLE change_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_id BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO change_head (id, last_id, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
