-- The food bank's kiosk page: pairing codes, device credentials, providers'
-- addresses (the kiosk shows where to pick up) and Idempotency-Keys on
-- recipients' actions (the page replays taps queued while offline).

-- A provider's street address, as typed at registration ('' when none was
-- given, and once the provider is erased). Edge-local: not on the wire.
ALTER TABLE providers ADD COLUMN address TEXT NOT NULL DEFAULT '';

-- One-time pairing codes (`pahlawan kiosk pair`), stored as the SHA-256 of
-- the canonical code: a read of the database does not reveal a live code.
CREATE TABLE kiosk_pairings (
    code_hash    BLOB PRIMARY KEY,
    recipient_id BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    -- The device the code paired, once redeemed.
    used_by      BLOB
) WITHOUT ROWID;

-- Device credentials of paired kiosks: the id and the SHA-256 of the secret
-- held in the device's cookie. Revoked rows stay (for `kiosk list` and the
-- audit trail).
CREATE TABLE kiosk_devices (
    id           BLOB PRIMARY KEY,
    recipient_id BLOB NOT NULL,
    secret_hash  BLOB NOT NULL,
    label        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER
) WITHOUT ROWID;
CREATE INDEX kiosk_devices_recipient ON kiosk_devices (recipient_id);

-- Idempotency-Key → the action it applied, per recipient: a replayed tap
-- answers with the surplus as it stands, and is not applied again.
CREATE TABLE action_keys (
    recipient_id BLOB NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  INTEGER NOT NULL,
    surplus_id   BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (recipient_id, key)
) WITHOUT ROWID;
CREATE INDEX action_keys_created ON action_keys (created_at);
