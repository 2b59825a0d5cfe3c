-- The change history (docs/ARCHITECTURE.md, "Change history"): one row per write, from every
-- surface, in the write's own transaction. Rows form one hash chain per customer (the changes of
-- no customer, such as API tokens and staff accounts, form chain 0): `prev_hash` is the hash of
-- the chain's row before, `hash` is SHA-256 over `prev_hash` and the row's content. A writer locks
-- its chain's `change_head` row first, so rows join a chain one at a time, in commit order, while
-- writes to different customers never wait for each other. Rows are never updated or deleted:
-- the triggers refuse it.
CREATE TABLE change_log (
    id BIGSERIAL PRIMARY KEY,
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
-- One index: every write pays for each index, and a customer's chain is what is asked for
-- (a plan's changes are found within its customer's; an actor's or an operation's by a scan).
CREATE INDEX change_log_customer ON change_log (customer_id, id);

CREATE FUNCTION change_log_refuse() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the change history is append-only: rows cannot be %d', lower(TG_OP);
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER change_log_no_update_or_delete BEFORE UPDATE OR DELETE ON change_log
FOR EACH ROW EXECUTE FUNCTION change_log_refuse();
CREATE TRIGGER change_log_no_truncate BEFORE TRUNCATE ON change_log
FOR EACH STATEMENT EXECUTE FUNCTION change_log_refuse();

-- The end of each chain: its last row's id and hash. Chain 0 starts here; a customer's chain
-- starts with its first change (id 0 and 64 zeros: the genesis).
CREATE TABLE change_head (
    chain BIGINT PRIMARY KEY,
    last_id BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO change_head (chain, last_id, hash)
VALUES (0, 0, '0000000000000000000000000000000000000000000000000000000000000000');
