-- Hub schema, version 5: signing in to the dashboard.
--
-- `login_codes`: one-time codes an admin mints (`pahlawan hub login-code`,
-- `POST /api/v1/login-codes`) for a person to trade for a session; used
-- once (deleted when taken) and short-lived. `dashboard_sessions`: the
-- sessions behind the dashboard's cookie. Both hold only the SHA-256 of
-- the secret, so a copy of the database signs nobody in.
--
-- Small, and read only at sign-in and per dashboard request: plain tables
-- on the coordinator under Citus (neither distributed nor reference).

CREATE TABLE login_codes (
    code_sha256 bytea PRIMARY KEY CHECK (length(code_sha256) = 32),
    role        text NOT NULL CHECK (role IN ('admin', 'viewer')),
    sub         text NOT NULL CHECK (length(sub) BETWEEN 1 AND 128),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX login_codes_expiry ON login_codes (expires_at);

CREATE TABLE dashboard_sessions (
    id_sha256   bytea PRIMARY KEY CHECK (length(id_sha256) = 32),
    role        text NOT NULL CHECK (role IN ('admin', 'viewer')),
    sub         text NOT NULL CHECK (length(sub) BETWEEN 1 AND 128),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);
