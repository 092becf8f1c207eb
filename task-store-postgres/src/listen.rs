//! The change feed of other processes: LISTEN/NOTIFY to wake at once, a poll as the
//! fallback, and a resync by change position after every wake, so that a change made by
//! another store instance reaches this store's subscribers even if its notification was lost
//! (the listener's connection was killed, the server restarted...).
//!
//! Two tasks: the *listener* owns a dedicated connection that LISTENs on the schema's channel
//! and, on a notification from another instance or a reconnection, wakes the *syncer*; the
//! syncer (woken, or every poll interval) reads the tasks whose change position passed its
//! watermark and were last written by another instance, and broadcasts them. Changes made by
//! this instance are broadcast by the call that made them, at commit. Both tasks end when the
//! store is dropped.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::{Notify, broadcast, watch};
use tracing::Instrument;
use uuid::Uuid;

use task_core::store::{StoreError, TaskChange};

use crate::error::Ctx;
use crate::rows::decode_task;

/// Rows read per resync query.
const SYNC_PAGE: i64 = 512;

/// Reads the tasks changed by other instances since a watermark, with the counter in the
/// same snapshot (the watermark moves to it once everything below it was read).
const SYNC: &str = "
SELECT c.seq, t.id, t.seq, t.doc::text
FROM change_counter c
LEFT JOIN LATERAL (
    SELECT id, seq, doc FROM tasks WHERE seq > $1 AND writer <> $2 ORDER BY seq LIMIT $3
) t ON true
ORDER BY t.seq";

/// A row of [`SYNC`]: the counter, then a changed task if any (id, position, document).
type SyncRow = (i64, Option<Uuid>, Option<i64>, Option<String>);

/// What the feed needs, shared by its two tasks.
pub(crate) struct Feed {
    pub ctx: Ctx,
    pub pool: PgPool,
    pub listen_options: PgConnectOptions,
    pub channel: String,
    pub instance: Uuid,
    pub changes: broadcast::Sender<TaskChange>,
    pub poll: Duration,
    pub watermark: i64,
}

/// Starts the listener and the syncer; they stop when `stop`'s sender is dropped.
pub(crate) fn spawn(feed: Feed, stop: watch::Receiver<()>) {
    let wake = Arc::new(Notify::new());
    let span =
        tracing::info_span!("change_feed", schema = %feed.ctx.schema, instance = %feed.instance);
    tokio::spawn(
        listener(
            feed.listen_options.clone(),
            feed.channel.clone(),
            feed.instance,
            wake.clone(),
            stop.clone(),
        )
        .instrument(span.clone()),
    );
    tokio::spawn(syncer(feed, wake, stop).instrument(span));
}

/// Keeps one connection LISTENing; wakes the syncer on foreign notifications and after every
/// (re)connection, so that what was missed while disconnected is read.
async fn listener(
    options: PgConnectOptions,
    channel: String,
    instance: Uuid,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<()>,
) {
    let me = instance.to_string();
    let mut backoff = Duration::from_millis(50);
    loop {
        let connected = tokio::select! {
            _ = stop.changed() => return,
            connected = connect(&options, &channel) => connected,
        };
        let mut listener = match connected {
            Ok(listener) => {
                backoff = Duration::from_millis(50);
                listener
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "change listener cannot connect");
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        tracing::debug!("change listener connected");
        wake.notify_one();
        loop {
            let received = tokio::select! {
                _ = stop.changed() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) if notification.payload() == me => {}
                Ok(Some(_)) => wake.notify_one(),
                // The connection dropped and sqlx reconnected: notifications may be lost.
                Ok(None) => wake.notify_one(),
                Err(err) => {
                    tracing::warn!(error = %err, "change listener lost its connection");
                    break;
                }
            }
        }
    }
}

async fn connect(options: &PgConnectOptions, channel: &str) -> Result<PgListener, sqlx::Error> {
    // A pool of one, only for the listener: sqlx reconnects through it.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

/// Broadcasts the changes of other instances when woken, and at least every poll interval.
async fn syncer(mut feed: Feed, wake: Arc<Notify>, mut stop: watch::Receiver<()>) {
    let mut poll = tokio::time::interval(feed.poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = wake.notified() => {}
            _ = poll.tick() => {}
        }
        if let Err(err) = feed.sync().await {
            tracing::warn!(error = %err, "change feed resync failed; retried at the next poll");
        }
    }
}

impl Feed {
    /// Reads and broadcasts every change of another instance past the watermark.
    async fn sync(&mut self) -> Result<(), StoreError> {
        loop {
            let rows: Vec<SyncRow> = sqlx::query_as(SYNC)
                .bind(self.watermark)
                .bind(self.instance)
                .bind(SYNC_PAGE)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| {
                    self.ctx.db(
                        "reading changes",
                        format_args!("changes after position {}", self.watermark),
                        e,
                    )
                })?;
            let upto = rows.first().map_or(self.watermark, |row| row.0);
            let mut read = 0;
            for (_, id, seq, doc) in rows {
                let (Some(id), Some(seq), Some(doc)) = (id, seq, doc) else {
                    continue;
                };
                read += 1;
                self.watermark = self.watermark.max(seq);
                match decode_task(&self.ctx, id, &doc) {
                    // No subscriber is fine: nobody is waiting.
                    Ok(task) => drop(self.changes.send(TaskChange::of(&task))),
                    Err(err) => tracing::warn!(error = %err, "skipping an unreadable change"),
                }
            }
            if read < SYNC_PAGE {
                self.watermark = self.watermark.max(upto);
                return Ok(());
            }
        }
    }
}
