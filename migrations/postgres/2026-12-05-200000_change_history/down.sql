DROP TABLE change_head;
DROP TABLE change_log;
DROP FUNCTION change_log_refuse();
