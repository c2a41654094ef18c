-- Sync with the hub.
-- The S2 cell each outbox event concerns (0 for none), shipped with the event
-- so the hub can place it in its region.
ALTER TABLE outbox ADD COLUMN cell INTEGER NOT NULL DEFAULT 0;
-- Recipients of neighbouring cells, imported from the hub for matching across
-- the border: owner_edge names the edge that owns them (NULL: this edge).
ALTER TABLE recipients ADD COLUMN owner_edge TEXT;
INSERT INTO edge_meta (key, value) VALUES ('lease_epoch', '0');
