INSERT INTO change_head (chain, last_id, hash)
SELECT id, change_last_id, change_hash FROM customer WHERE change_last_id <> 0;
ALTER TABLE customer DROP COLUMN change_hash, DROP COLUMN change_last_id;
-- The function as 2026-12-07-000000_change_append made it.
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
    p_tail BYTEA
) RETURNS BIGINT AS $$
DECLARE
    v_prev TEXT;
    v_id BIGINT;
    v_hash TEXT;
BEGIN
    -- The head locked (a writer ahead is waited for, and its committed hash read); a chain's
    -- first change makes it (a writer racing to make it too waits on the lock).
    SELECT hash INTO v_prev FROM change_head WHERE chain = p_chain FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        INSERT INTO change_head (chain, last_id, hash) VALUES (p_chain, 0, repeat('0', 64))
        ON CONFLICT (chain) DO NOTHING;
        SELECT hash INTO v_prev FROM change_head WHERE chain = p_chain FOR NO KEY UPDATE;
    END IF;
    v_id := nextval('change_log_id_seq');
    v_hash := encode(sha256(convert_to(
        'plan-invoicer change v1' || chr(10) || v_prev || chr(10) || length(v_id::text) || ':' || v_id::text,
        'UTF8') || p_tail), 'hex');
    INSERT INTO change_log (id, at, written_at, actor, on_behalf_of, operation, customer_id,
        plan_id, new_plan_id, invoice_id, objects, before, after, reason, idempotency_key,
        prev_hash, hash)
    VALUES (v_id, p_at, p_written_at, p_actor, p_on_behalf_of, p_operation, p_customer_id,
        p_plan_id, p_new_plan_id, p_invoice_id, p_objects, p_before, p_after, p_reason,
        p_idempotency_key, v_prev, v_hash);
    UPDATE change_head SET last_id = v_id, hash = v_hash WHERE chain = p_chain;
    RETURN v_id;
END;
$$ LANGUAGE plpgsql;
