-- Notifications for people who are not looking at a screen (issue 18): the
-- channels a recipient registered, and how far the dispatcher has finished
-- the outbox.

-- A recipient's notification channels. `id` is the dispatcher's channel key
-- (0 is the configured on-call webhook, never a row); AUTOINCREMENT so a
-- removed channel's key is never given to another. `sealed` holds what a
-- channel needs to send (a webhook's URL and its signing secret) sealed
-- under the PII keys with the recipient's id as associated data, like
-- contact data. Erasing the recipient deletes its rows.
CREATE TABLE notify_channels (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id    BLOB NOT NULL UNIQUE,
    recipient_id BLOB NOT NULL,
    kind         TEXT NOT NULL,
    sealed       BLOB NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX notify_channels_recipient ON notify_channels (recipient_id);

-- The last outbox seq whose notifications are all finished (delivered,
-- refused, or past their deadline). The dispatcher reads after it when the
-- edge starts, so nothing committed is forgotten across a crash. An edge
-- upgraded to this version starts at its newest event: the offers of its
-- history are long answered.
CREATE TABLE notify_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    notified_seq INTEGER NOT NULL
);
INSERT INTO notify_state (id, notified_seq) SELECT 1, coalesce(max(seq), 0) FROM outbox;
