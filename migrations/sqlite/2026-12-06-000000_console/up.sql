-- The support console's staff, their sessions and their login attempts.
-- A password is kept as an argon2id hash (PHC string); NULL until the one-time setup link is used.
-- A setup link's secret is kept as a SHA-256, like an API token's.
CREATE TABLE console_user (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'support', 'admin')),
    password_hash TEXT,
    setup_sha256 TEXT,
    setup_expires_at TEXT,
    disabled_at TEXT,
    created_at TEXT NOT NULL
);

-- A signed-in session: only the SHA-256 of its id is kept (the id lives in the staff member's
-- cookie), with the CSRF token of its forms. Logging out deletes the row, on every worker at once.
CREATE TABLE console_session (
    id_sha256 TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES console_user (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL
);
CREATE INDEX console_session_user ON console_session (user_id);

-- Failed logins, counted per account and per address for the throttle and the lockout.
CREATE TABLE console_login_failure (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL,
    address TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX console_login_failure_email ON console_login_failure (email, at);
CREATE INDEX console_login_failure_address ON console_login_failure (address, at);
