-- Edge node schema, version 1. Applied by refinery at start.
-- Ids are UUID v7 as 16-byte BLOBs; times are UTC milliseconds since the
-- Unix epoch; masses are whole grams.

CREATE TABLE edge_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE providers (
    id            BLOB PRIMARY KEY,
    name          TEXT NOT NULL,
    lat           REAL NOT NULL,
    lon           REAL NOT NULL,
    contact_phone TEXT NOT NULL,
    contact_email TEXT NOT NULL,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE recipients (
    id                 BLOB PRIMARY KEY,
    name               TEXT NOT NULL,
    lat                REAL NOT NULL,
    lon                REAL NOT NULL,
    cell               INTEGER NOT NULL,
    capacity_g_per_day INTEGER NOT NULL,
    food_types         INTEGER NOT NULL,
    is_fallback        INTEGER NOT NULL,
    contact_phone      TEXT NOT NULL,
    contact_email      TEXT NOT NULL,
    created_at         INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE surplus (
    id            BLOB PRIMARY KEY,
    provider_id   BLOB NOT NULL,
    lat           REAL NOT NULL,
    lon           REAL NOT NULL,
    cell          INTEGER NOT NULL,
    quantity_g    INTEGER NOT NULL,
    food_type     TEXT NOT NULL,
    expires_at    INTEGER NOT NULL,
    description   TEXT NOT NULL,
    posted_at     INTEGER NOT NULL,
    status        TEXT NOT NULL,
    version       INTEGER NOT NULL,
    failed_offers INTEGER NOT NULL,
    dlq_attempts  INTEGER NOT NULL,
    dlq_retry_at  INTEGER,
    fallback_tried INTEGER NOT NULL,
    claimed_by    BLOB,
    claimed_at    INTEGER,
    claimed_day   INTEGER,
    delivered_g   INTEGER,
    updated_at    INTEGER NOT NULL
) WITHOUT ROWID;

-- Only unfinished surplus are loaded at start; keep that scan small.
CREATE INDEX surplus_live ON surplus (status) WHERE status NOT IN ('delivered', 'expired');

-- Every offer ever made: matching history, exclusions and acceptance rates.
CREATE TABLE offers (
    surplus_id   BLOB NOT NULL,
    recipient_id BLOB NOT NULL,
    attempt      INTEGER NOT NULL,
    made_at      INTEGER NOT NULL,
    ack_deadline INTEGER NOT NULL,
    reserved_day INTEGER NOT NULL,
    fallback     INTEGER NOT NULL,
    -- pending | accepted | declined | timed_out | superseded | expired
    outcome      TEXT NOT NULL,
    decided_at   INTEGER,
    PRIMARY KEY (surplus_id, recipient_id)
) WITHOUT ROWID;

-- The transactional outbox: one row per event, `seq` dense from 1. The
-- envelope is the exact wire frame the hub receives.
CREATE TABLE outbox (
    seq      INTEGER PRIMARY KEY,
    envelope BLOB NOT NULL
);

-- How far the hub has acknowledged the outbox (one row).
CREATE TABLE sync_state (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    published_seq INTEGER NOT NULL
);
INSERT INTO sync_state (id, published_seq) VALUES (1, 0);

-- Idempotency-Key → the surplus it created, per provider.
CREATE TABLE idempotency_keys (
    provider_id BLOB NOT NULL,
    key         TEXT NOT NULL,
    fingerprint INTEGER NOT NULL,
    surplus_id  BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (provider_id, key)
) WITHOUT ROWID;
