-- Personal data sealed at rest, the audit log, erasure and retention.
-- (Databases from before this version hold contacts in the clear and wire-1
-- envelopes; the edge refuses to migrate one that holds any event.)

-- Contact phone and e-mail: one AES-256-GCM blob, key id inside, bound to the
-- subject's id (see edge-node/src/pii.rs). Empty once the subject is erased.
ALTER TABLE providers DROP COLUMN contact_phone;
ALTER TABLE providers DROP COLUMN contact_email;
ALTER TABLE providers ADD COLUMN contact_sealed BLOB NOT NULL DEFAULT x'';
ALTER TABLE providers ADD COLUMN erased_at INTEGER;
ALTER TABLE recipients DROP COLUMN contact_phone;
ALTER TABLE recipients DROP COLUMN contact_email;
ALTER TABLE recipients ADD COLUMN contact_sealed BLOB NOT NULL DEFAULT x'';
ALTER TABLE recipients ADD COLUMN erased_at INTEGER;

-- The subject whose personal data an outbox event carries (registrations,
-- re-sealing), so erasure can redact those envelopes too; and when the event
-- was committed, for retention.
ALTER TABLE outbox ADD COLUMN subject BLOB;
ALTER TABLE outbox ADD COLUMN committed_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_subject ON outbox (subject) WHERE subject IS NOT NULL;

-- Who did what, from where: every mutating call, every refusal of one and
-- every read of personal data. Append-only for the application. Retention
-- does not touch it.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    role       TEXT NOT NULL,
    action     TEXT NOT NULL,
    resource   TEXT NOT NULL,
    status     INTEGER NOT NULL,
    ip         TEXT,
    user_agent TEXT
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- What retention folds away: delivered kilograms per local day, so impact
-- totals survive the deletion of old surplus rows.
CREATE TABLE impact_daily (
    day         INTEGER PRIMARY KEY,
    delivered_n INTEGER NOT NULL,
    delivered_g INTEGER NOT NULL,
    expired_n   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX offers_made_at ON offers (made_at);
