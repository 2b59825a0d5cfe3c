DROP TABLE console_login_failure;
DROP TABLE console_session;
DROP TABLE console_user;
