DROP TABLE change_head;
DROP TRIGGER change_log_no_delete;
DROP TRIGGER change_log_no_update;
DROP TABLE change_log;
