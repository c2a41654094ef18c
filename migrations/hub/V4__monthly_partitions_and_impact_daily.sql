-- Hub schema, version 4: monthly partitions, and daily impact totals for
-- retention.
--
-- 1. `event_log` and `surplus` are partitioned by month of `received_at`:
--    the hub's clock when it applied the event (the surplus's posting).
--    The hub's clock, not the edge's, so the partition a row lands in is
--    always one the hub made ahead of time (`cloud_hub::db::partitions`:
--    this month and the next two) and a skewed edge clock cannot ask for
--    a month nobody made. Partitions are named `<table>_pYYYYMM`.
--    Retention drops whole partitions older than `retention_days`; `pahlawan
--    hub export` writes old ones as Parquet and detaches them.
--
--    Under Citus both stay distributed by geo_region_id and colocated with
--    the rest (a distributed partitioned table: every month is itself
--    distributed, shard by shard), so a query naming one region and one
--    month is routed to one shard and pruned to one partition of it.
--
--    A primary key of a partitioned table must hold the partition column:
--    (geo_region_id, edge_id, seq, received_at) and
--    (geo_region_id, id, received_at). Exactly-once does not rest on them:
--    the high-water mark, locked and moved in the same transaction, admits a
--    batch only once; and a surplus is inserted only if its region holds no
--    row with its id (cloud_hub::db::apply).
--
-- 2. `impact_daily`: what retention and export fold away before they drop a
--    surplus partition — per region, edge and UTC day: surplus posted (and
--    grams), delivered (and grams, on the day of delivery), expired.
--    Distributed by geo_region_id, colocated with surplus.

CREATE TABLE impact_daily (
    geo_region_id BIGINT NOT NULL,
    day           DATE NOT NULL,
    edge_id       TEXT NOT NULL,
    posted_n      BIGINT NOT NULL DEFAULT 0,
    posted_g      BIGINT NOT NULL DEFAULT 0,
    delivered_n   BIGINT NOT NULL DEFAULT 0,
    delivered_g   BIGINT NOT NULL DEFAULT 0,
    expired_n     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (geo_region_id, day, edge_id)
);

-- Monthly partitions covering every existing row of `old`, created on `new`.
CREATE FUNCTION pahlawan_v4_months(old regclass, new text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m date;
    last date;
BEGIN
    EXECUTE format('SELECT date_trunc(''month'', min(received_at) AT TIME ZONE ''UTC'')::date,
                           date_trunc(''month'', max(received_at) AT TIME ZONE ''UTC'')::date FROM %s', old)
        INTO m, last;
    WHILE m IS NOT NULL AND m <= last LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                       new || '_p' || to_char(m, 'YYYYMM'), new,
                       (m::timestamp AT TIME ZONE 'UTC'),
                       ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
        m := (m + interval '1 month')::date;
    END LOOP;
END;
$$;

-- The renames run through EXECUTE, each alone: Citus forwards the DDL of a
-- distributed table to its shards as the client's query text, and a
-- migration is one multi-statement query, which a worker refuses ("cannot
-- insert multiple commands into a prepared statement").
CREATE FUNCTION pahlawan_v4_alone(ddl text) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN EXECUTE ddl; END; $$;

-- The event log.
SELECT pahlawan_v4_alone('ALTER TABLE event_log RENAME TO event_log_v3');
SELECT pahlawan_v4_alone('ALTER INDEX event_log_subject RENAME TO event_log_v3_subject');
CREATE TABLE event_log (LIKE event_log_v3 INCLUDING DEFAULTS) PARTITION BY RANGE (received_at);
ALTER TABLE event_log ADD PRIMARY KEY (geo_region_id, edge_id, seq, received_at);
CREATE INDEX event_log_subject ON event_log (geo_region_id, edge_id, subject_id)
    WHERE subject_id IS NOT NULL;
SELECT pahlawan_v4_months('event_log_v3', 'event_log');
INSERT INTO event_log SELECT * FROM event_log_v3;
DROP TABLE event_log_v3;

-- Surplus: when the hub first applied its posting (existing rows: when
-- they were last updated, the best the hub knows).
SELECT pahlawan_v4_alone('ALTER TABLE surplus RENAME TO surplus_v3');
SELECT pahlawan_v4_alone('ALTER INDEX surplus_region_status RENAME TO surplus_v3_region_status');
SELECT pahlawan_v4_alone('ALTER TABLE surplus_v3 ADD COLUMN received_at TIMESTAMPTZ NOT NULL DEFAULT now()');
UPDATE surplus_v3 SET received_at = updated_at;
CREATE TABLE surplus (LIKE surplus_v3 INCLUDING DEFAULTS) PARTITION BY RANGE (received_at);
ALTER TABLE surplus ADD PRIMARY KEY (geo_region_id, id, received_at);
CREATE INDEX surplus_region_status ON surplus (geo_region_id, status, posted_at);
SELECT pahlawan_v4_months('surplus_v3', 'surplus');
INSERT INTO surplus SELECT * FROM surplus_v3;
DROP TABLE surplus_v3;

DROP FUNCTION pahlawan_v4_months(regclass, text);
DROP FUNCTION pahlawan_v4_alone(text);
