-- The HTTP API's bearer tokens. Only a SHA-256 hash of each secret is kept; a token is
-- `pit_<id>_<secret>`, so a request names its row and the hash is compared in constant time.
CREATE TABLE api_token (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL CHECK (scope IN ('read', 'write')),
    secret_sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

-- The first response to a POST with an Idempotency-Key, kept 24 hours and replayed for a retry
-- with the same key (per token); the hash of the request tells a retry from a different request.
CREATE TABLE api_idempotency (
    token_id INTEGER NOT NULL REFERENCES api_token (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (token_id, key)
);
CREATE INDEX api_idempotency_created_at ON api_idempotency (created_at);

-- Where each consumer of the plan-events feed stands, for consumers that let the server keep
-- their cursor (POST /v1/events/ack).
CREATE TABLE event_consumer (
    name TEXT PRIMARY KEY,
    acked_through INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
