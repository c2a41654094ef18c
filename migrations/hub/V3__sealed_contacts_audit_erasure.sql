-- Hub schema, version 3: sealed contacts, erasure, the audit log.
--
-- 1. Contacts arrive sealed by the edge (AES-256-GCM; the hub never holds
--    the key) and are stored as the bytes the edge sent. The plaintext
--    columns go. `erased_at` marks a subject erased (GDPR): its name is
--    replaced by a marker and its sealed contact emptied; its surplus,
--    offers and delivered kilograms stay.
--
-- 2. `event_log.subject_id` names the data subject whose personal data an
--    event carries (registrations, reseals, erasures), so an erasure can
--    find and redact the hub's stored copies of that subject's events
--    within the edge's log (geo_region_id = the edge's home region).
--
-- 3. `audit_log`: one row per audited call on an edge, keyed like the event
--    it came from (geo_region_id = the edge's home region, edge_id, seq), so
--    a replayed batch adds nothing. Distributed by geo_region_id, colocated
--    with surplus (applied by the hub where Citus exists). Append-only for
--    the application: UPDATE, DELETE and TRUNCATE raise.

ALTER TABLE providers
    DROP COLUMN contact_phone,
    DROP COLUMN contact_email,
    ADD COLUMN contact_sealed BYTEA NOT NULL DEFAULT ''::bytea,
    ADD COLUMN erased_at TIMESTAMPTZ;

ALTER TABLE recipients
    DROP COLUMN contact_phone,
    DROP COLUMN contact_email,
    ADD COLUMN contact_sealed BYTEA NOT NULL DEFAULT ''::bytea,
    ADD COLUMN erased_at TIMESTAMPTZ;

ALTER TABLE event_log ADD COLUMN subject_id UUID;
-- A subject's events within one edge's log (one shard under Citus).
CREATE INDEX event_log_subject ON event_log (geo_region_id, edge_id, subject_id)
    WHERE subject_id IS NOT NULL;

CREATE TABLE audit_log (
    geo_region_id BIGINT NOT NULL,
    edge_id       TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    -- The envelope's `at`: when the edge answered the call.
    at            TIMESTAMPTZ NOT NULL,
    actor         TEXT NOT NULL,
    role          TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource      TEXT NOT NULL,
    -- The HTTP status answered (0..=65535).
    status        INTEGER NOT NULL,
    ip            TEXT,
    user_agent    TEXT,
    received_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (geo_region_id, edge_id, seq)
);
CREATE INDEX audit_log_at ON audit_log (geo_region_id, at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
