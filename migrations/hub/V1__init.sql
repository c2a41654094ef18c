-- Hub schema, version 1 (PostgreSQL 15; Citus-ready).
--
-- Distribution (applied by the hub only where the `citus` extension exists):
--   event_log         distributed by edge_id        (keyed (edge_id, seq))
--   surplus           distributed by geo_region_id  (keyed (geo_region_id, id))
--   matching_history  distributed by geo_region_id, colocated with surplus
--   edges, providers, recipients, cell_leases: reference tables (small registries)
-- Every primary key of a distributed table contains its distribution column.
-- geo_region_id is the S2 parent cell at level 4 (~600 km) of the row's cell.

CREATE TABLE edges (
    edge_id       TEXT PRIMARY KEY,
    high_water    BIGINT NOT NULL DEFAULT 0,
    lease_epoch   BIGINT NOT NULL DEFAULT 0,
    first_seen    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- `at` of the newest applied event: replication lag = now() - this.
    last_event_at TIMESTAMPTZ
);

CREATE TABLE event_log (
    edge_id       TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    geo_region_id BIGINT NOT NULL,
    cell          BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    at            TIMESTAMPTZ NOT NULL,
    lease_epoch   BIGINT NOT NULL,
    trace_id      BYTEA,
    -- Logged but not projected: from an edge that did not hold the cell.
    fenced        BOOLEAN NOT NULL,
    envelope      BYTEA NOT NULL,
    received_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (edge_id, seq)
);

CREATE TABLE providers (
    id            UUID PRIMARY KEY,
    edge_id       TEXT NOT NULL,
    name          TEXT NOT NULL,
    lat           DOUBLE PRECISION NOT NULL,
    lon           DOUBLE PRECISION NOT NULL,
    cell          BIGINT NOT NULL,
    contact_phone TEXT NOT NULL,
    contact_email TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE recipients (
    id                 UUID PRIMARY KEY,
    edge_id            TEXT NOT NULL,
    name               TEXT NOT NULL,
    lat                DOUBLE PRECISION NOT NULL,
    lon                DOUBLE PRECISION NOT NULL,
    cell               BIGINT NOT NULL,
    capacity_g_per_day BIGINT NOT NULL,
    food_types         SMALLINT NOT NULL,
    is_fallback        BOOLEAN NOT NULL,
    contact_phone      TEXT NOT NULL,
    contact_email      TEXT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX recipients_cell ON recipients (cell);

CREATE TABLE surplus (
    geo_region_id BIGINT NOT NULL,
    id            UUID NOT NULL,
    edge_id       TEXT NOT NULL,
    provider_id   UUID NOT NULL,
    lat           DOUBLE PRECISION NOT NULL,
    lon           DOUBLE PRECISION NOT NULL,
    cell          BIGINT NOT NULL,
    quantity_g    BIGINT NOT NULL,
    food_type     TEXT NOT NULL,
    description   TEXT NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    posted_at     TIMESTAMPTZ NOT NULL,
    status        TEXT NOT NULL,
    version       BIGINT NOT NULL,
    claimed_by    UUID,
    delivered_g   BIGINT,
    updated_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (geo_region_id, id)
);
CREATE INDEX surplus_region_status ON surplus (geo_region_id, status, posted_at);

CREATE TABLE matching_history (
    geo_region_id BIGINT NOT NULL,
    surplus_id    UUID NOT NULL,
    recipient_id  UUID NOT NULL,
    edge_id       TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    made_at       TIMESTAMPTZ NOT NULL,
    ack_deadline  TIMESTAMPTZ NOT NULL,
    fallback      BOOLEAN NOT NULL,
    -- pending | accepted | declined | timed_out | superseded | expired
    outcome       TEXT NOT NULL,
    decided_at    TIMESTAMPTZ,
    PRIMARY KEY (geo_region_id, surplus_id, recipient_id)
);

CREATE TABLE cell_leases (
    cell        BIGINT PRIMARY KEY,
    holder      TEXT NOT NULL,
    epoch       BIGINT NOT NULL,
    fence_below BIGINT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);

CREATE SEQUENCE lease_epoch_seq;
