-- The change history (docs/ARCHITECTURE.md, "Change history"): one row per write, from every
-- surface, in the write's own transaction. Rows form one hash chain per customer (the changes of
-- no customer, such as API tokens and staff accounts, form chain 0): `prev_hash` is the hash of
-- the chain's row before, `hash` is SHA-256 over `prev_hash` and the row's content. A writer locks
-- its chain's `change_head` row first, so rows join a chain one at a time, in commit order, while
-- writes to different customers never wait for each other. Rows are never updated or deleted:
-- the triggers refuse it.
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
-- One index: every write pays for each index, and a customer's chain is what is asked for
-- (a plan's changes are found within its customer's; an actor's or an operation's by a scan).
CREATE INDEX change_log_customer ON change_log (customer_id, id);

CREATE TRIGGER change_log_no_update BEFORE UPDATE ON change_log
BEGIN
    SELECT RAISE(ABORT, 'the change history is append-only: rows cannot be updated');
END;

CREATE TRIGGER change_log_no_delete BEFORE DELETE ON change_log
BEGIN
    SELECT RAISE(ABORT, 'the change history is append-only: rows cannot be deleted');
END;

-- The end of each chain: its last row's id and hash. Chain 0 starts here; a customer's chain
-- starts with its first change (id 0 and 64 zeros: the genesis).
CREATE TABLE change_head (
    chain INTEGER PRIMARY KEY,
    last_id INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO change_head (chain, last_id, hash)
VALUES (0, 0, '0000000000000000000000000000000000000000000000000000000000000000');
