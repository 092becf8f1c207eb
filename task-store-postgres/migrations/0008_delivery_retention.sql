-- Schema version 8 of task-store-postgres: the retention of ended webhook deliveries.
--
-- A delivery ends when the receiver acknowledges it (`delivered`, at `delivered_at`) or when
-- its retry window is over (`failed`, at `last_attempt_at`, the start of its last attempt).
-- The retention (prune.rs) deletes the deliveries that ended before its cut-off, in batches,
-- with `COALESCE(delivered_at, last_attempt_at) < $1 AND state <> 'pending'`: this index holds
-- exactly those rows under exactly that expression, so each batch reads the oldest ended
-- deliveries from the index instead of scanning an outbox that only grew until this version.
-- Pending deliveries (still to go out, whatever their age) are not in it.
--
-- Built inside the migration's transaction (no CONCURRENTLY): writes of deliveries wait for
-- the build, once.
CREATE INDEX webhook_deliveries_ended ON webhook_deliveries ((COALESCE(delivered_at, last_attempt_at)))
    WHERE state <> 'pending';
