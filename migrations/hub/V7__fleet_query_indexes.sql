-- Hub schema, version 7: indexes for the dashboard's fleet reads
-- (`cloud_hub::db::fleet`). `pahlawan bench-fleet` on a hub holding a million
-- events found each of them reading whole tables (BENCHMARKS.md, "The
-- dashboard's fleet queries on 1,000,000 events"). Each index is partial,
-- holding only the rows its statements read, and the surplus ones carry the
-- columns those statements use, so they are answered from the index alone:
--
--   surplus_delivered   delivered surplus by when delivered: impact per edge
--                       (every delivered row: index-only instead of the
--                       table), the daily series' deliveries, today's map
--   surplus_posted      surplus by posting time: the daily series' postings
--   surplus_unfinished  surplus nobody has finished, by expiry: the trouble
--                       list (a handful of rows; the rest are delivered or
--                       expired)
--   matching_fallback   fallback offers by when made: the fallback alerts
--   matching_timed_out  timed-out offers by when decided: the unanswered
--   event_log_fenced    fenced log rows by receipt: the fleet table's flag
--
-- On the partitioned tables (surplus, event_log) an index on the parent is
-- made on every month and on each month made later; under Citus on every
-- shard. As in V4, each DDL runs through EXECUTE alone: Citus forwards a
-- distributed table's DDL to its shards as the client's query text, and a
-- migration is one multi-statement query, which a worker refuses.

CREATE FUNCTION pahlawan_v7_alone(ddl text) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN EXECUTE ddl; END; $$;

SELECT pahlawan_v7_alone('CREATE INDEX surplus_delivered ON surplus (updated_at)
    INCLUDE (geo_region_id, edge_id, cell, delivered_g)
    WHERE status = ''delivered'' AND delivered_g IS NOT NULL');
SELECT pahlawan_v7_alone('CREATE INDEX surplus_posted ON surplus (posted_at)
    INCLUDE (geo_region_id, quantity_g)');
SELECT pahlawan_v7_alone('CREATE INDEX surplus_unfinished ON surplus (expires_at, id)
    WHERE status IN (''available'', ''offered'', ''dead_lettered'')');
SELECT pahlawan_v7_alone('CREATE INDEX matching_fallback ON matching_history (made_at)
    WHERE fallback');
SELECT pahlawan_v7_alone('CREATE INDEX matching_timed_out ON matching_history (decided_at)
    INCLUDE (recipient_id) WHERE outcome = ''timed_out''');
SELECT pahlawan_v7_alone('CREATE INDEX event_log_fenced ON event_log (received_at)
    WHERE fenced');

DROP FUNCTION pahlawan_v7_alone(text);
