-- Hub schema, version 6: what an edge said in its last Hello, for the
-- dashboard's fleet table: the last seq committed in its outbox then (its
-- backlog is at least that minus the high-water mark) and its protocol
-- version. Written once per Hello into the `edges` reference table.

ALTER TABLE edges ADD COLUMN hello_committed_seq BIGINT;
ALTER TABLE edges ADD COLUMN protocol INTEGER;
ALTER TABLE edges ADD COLUMN hello_at TIMESTAMPTZ;
