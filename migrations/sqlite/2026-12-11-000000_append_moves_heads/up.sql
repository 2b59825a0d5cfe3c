-- The append moves its chain's head itself (docs/ARCHITECTURE.md, "Change history"), in the
-- statement that also sets what the write leaves on the customer's row (a seat report's
-- count), instead of a trigger updating the customer's row a second time after the insert.
DROP TRIGGER change_log_moves_customer_head;
DROP TRIGGER change_log_moves_head;
