-- Each row links to the row before it in its chain (docs/ARCHITECTURE.md, "Change history"):
-- `prev_id`, 0 for a chain's first row, which `changes verify` checks along with the hashes.
-- SQLite reads a customer's changes by walking these links from the head; PostgreSQL keeps its
-- index on (customer_id, id) for that, and writes the links so that both backends hold the same
-- history. `change_append` reads the head's id with its hash and stores it.
ALTER TABLE change_log ADD COLUMN prev_id BIGINT NOT NULL DEFAULT 0;

ALTER TABLE change_log DISABLE TRIGGER change_log_no_update_or_delete;
UPDATE change_log SET prev_id = l.prev
FROM (
    SELECT id, lag(id, 1, 0::BIGINT) OVER (PARTITION BY customer_id ORDER BY id) AS prev
    FROM change_log
) AS l
WHERE l.id = change_log.id AND l.prev <> 0;
ALTER TABLE change_log ENABLE TRIGGER change_log_no_update_or_delete;

CREATE OR REPLACE FUNCTION change_append(
    p_chain BIGINT,
    p_at TIMESTAMPTZ,
    p_written_at TIMESTAMPTZ,
    p_actor TEXT,
    p_on_behalf_of TEXT,
    p_operation TEXT,
    p_customer_id BIGINT,
    p_plan_id BIGINT,
    p_new_plan_id BIGINT,
    p_invoice_id BIGINT,
    p_objects TEXT,
    p_before TEXT,
    p_after TEXT,
    p_reason TEXT,
    p_idempotency_key TEXT,
    p_tail BYTEA,
    p_seat_count INTEGER
) RETURNS BIGINT AS $$
DECLARE
    v_prev TEXT;
    v_prev_id BIGINT;
    v_id BIGINT;
    v_hash TEXT;
BEGIN
    -- The head read, then moved only if it is still what was read: the move takes the row's
    -- lock (a writer that updated the row holds it already; a writer ahead is waited for),
    -- and a head moved by a writer ahead is read again, with a new id. Locking the row first
    -- instead (`FOR NO KEY UPDATE`) wrote one more WAL record at every append.
    LOOP
        IF p_chain = 0 THEN
            SELECT hash, last_id INTO v_prev, v_prev_id FROM change_head WHERE chain = 0;
        ELSE
            SELECT change_hash, change_last_id INTO v_prev, v_prev_id FROM customer
            WHERE id = p_chain;
        END IF;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the change history has no chain %: no such customer', p_chain;
        END IF;
        v_id := nextval('change_log_id_seq');
        v_hash := encode(sha256(convert_to(
            'plan-invoicer change v1' || chr(10) || v_prev || chr(10) || length(v_id::text) || ':' || v_id::text,
            'UTF8') || p_tail), 'hex');
        IF p_chain = 0 THEN
            UPDATE change_head SET last_id = v_id, hash = v_hash WHERE chain = 0 AND hash = v_prev;
        ELSE
            UPDATE customer SET change_last_id = v_id, change_hash = v_hash,
                seat_count = coalesce(p_seat_count, seat_count)
            WHERE id = p_chain AND change_hash = v_prev;
        END IF;
        EXIT WHEN FOUND;
    END LOOP;
    INSERT INTO change_log (id, at, written_at, actor, on_behalf_of, operation, customer_id,
        plan_id, new_plan_id, invoice_id, objects, before, after, reason, idempotency_key,
        prev_hash, hash, prev_id)
    VALUES (v_id, p_at, p_written_at, p_actor, p_on_behalf_of, p_operation, p_customer_id,
        p_plan_id, p_new_plan_id, p_invoice_id, p_objects, p_before, p_after, p_reason,
        p_idempotency_key, v_prev, v_hash, v_prev_id);
    RETURN v_id;
END;
$$ LANGUAGE plpgsql
-- Its statements read and write one row by its key: one plan fits every call. The connection
-- plans every statement afresh (`plan_cache_mode = force_custom_plan`, for the queries whose
-- best plan follows the tables), which here planned four statements at every append.
SET plan_cache_mode = force_generic_plan;
