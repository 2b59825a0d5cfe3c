-- The function as 2026-12-09-000000_change_append_sets_seats made it.
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
    v_id BIGINT;
    v_hash TEXT;
BEGIN
    -- The head read, then moved only if it is still what was read: the move takes the row's
    -- lock (a writer that updated the row holds it already; a writer ahead is waited for),
    -- and a head moved by a writer ahead is read again, with a new id. Locking the row first
    -- instead (`FOR NO KEY UPDATE`) wrote one more WAL record at every append.
    LOOP
        IF p_chain = 0 THEN
            SELECT hash INTO v_prev FROM change_head WHERE chain = 0;
        ELSE
            SELECT change_hash INTO v_prev FROM customer WHERE id = p_chain;
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
        prev_hash, hash)
    VALUES (v_id, p_at, p_written_at, p_actor, p_on_behalf_of, p_operation, p_customer_id,
        p_plan_id, p_new_plan_id, p_invoice_id, p_objects, p_before, p_after, p_reason,
        p_idempotency_key, v_prev, v_hash);
    RETURN v_id;
END;
$$ LANGUAGE plpgsql
-- Its statements read and write one row by its key: one plan fits every call. The connection
-- plans every statement afresh (`plan_cache_mode = force_custom_plan`, for the queries whose
-- best plan follows the tables), which here planned four statements at every append.
SET plan_cache_mode = force_generic_plan;

ALTER TABLE change_log DISABLE TRIGGER change_log_no_update_or_delete;
ALTER TABLE change_log DROP COLUMN prev_id;
ALTER TABLE change_log ENABLE TRIGGER change_log_no_update_or_delete;
