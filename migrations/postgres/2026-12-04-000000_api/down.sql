DROP TABLE event_consumer;
DROP TABLE api_idempotency;
DROP TABLE api_token;
