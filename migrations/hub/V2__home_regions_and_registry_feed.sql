-- Hub schema, version 2.
--
-- 1. Each edge's log and progress live in the edge's home region (the region
--    of its first cell at its first Hello), so under Citus one batch's
--    high-water lock, log rows and — for a city edge whose cells share a
--    region — its projections all sit in one colocation group: the apply
--    transaction stays on one worker. The mutable high-water mark moves out
--    of `edges` (a reference table, where every write touches every worker)
--    into `edge_progress`, distributed and colocated with `event_log`.
--
--    Distribution (applied by the hub only where the `citus` extension exists):
--      event_log, edge_progress, surplus, matching_history:
--          distributed by geo_region_id, all colocated
--      edges, providers, recipients, cell_leases: reference tables
--    event_log.geo_region_id is the edge's home region; the region of an
--    event itself follows from its `cell`.
--
-- 2. The neighbour registry feed keys on the hub's clock (`received_at`), not
--    the edge's, and places recipients by `leaf_cell` so that edges owning
--    cells at different S2 levels still find each other's recipients.

ALTER TABLE edges ADD COLUMN home_region BIGINT;
UPDATE edges e SET home_region = COALESCE(
    (SELECT l.geo_region_id FROM event_log l WHERE l.edge_id = e.edge_id ORDER BY l.seq LIMIT 1), 0);
ALTER TABLE edges ALTER COLUMN home_region SET NOT NULL;

CREATE TABLE edge_progress (
    geo_region_id BIGINT NOT NULL,
    edge_id       TEXT NOT NULL,
    high_water    BIGINT NOT NULL DEFAULT 0,
    last_applied  TIMESTAMPTZ,
    -- `at` of the newest applied event: replication lag = now() - this.
    last_event_at TIMESTAMPTZ,
    PRIMARY KEY (geo_region_id, edge_id)
);
INSERT INTO edge_progress (geo_region_id, edge_id, high_water, last_event_at)
    SELECT home_region, edge_id, high_water, last_event_at FROM edges;
ALTER TABLE edges DROP COLUMN high_water, DROP COLUMN last_event_at;

UPDATE event_log l SET geo_region_id = e.home_region FROM edges e WHERE e.edge_id = l.edge_id;
ALTER TABLE event_log DROP CONSTRAINT event_log_pkey;
ALTER TABLE event_log ADD PRIMARY KEY (geo_region_id, edge_id, seq);

ALTER TABLE recipients ADD COLUMN received_at TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE recipients ADD COLUMN leaf_cell BIGINT;
-- A cell id lies inside its own range, so the old cell stands in for a leaf.
UPDATE recipients SET leaf_cell = cell;
ALTER TABLE recipients ALTER COLUMN leaf_cell SET NOT NULL;
CREATE INDEX recipients_leaf_cell ON recipients (leaf_cell);
CREATE INDEX recipients_received_at ON recipients (received_at);
DROP INDEX recipients_cell;
