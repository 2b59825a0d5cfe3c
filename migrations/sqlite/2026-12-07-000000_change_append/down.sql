DROP TRIGGER change_log_moves_head;
