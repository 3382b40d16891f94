//! The sweeper: a named, stoppable background task that removes expired packets in bounded
//! batches and forgets tombstones past their horizon.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::clock::now_ms;
use super::store::Store;

/// Most packets (and, separately, tombstones) removed per transaction.
pub const SWEEP_BATCH: usize = 1_000;

/// Sweeps every `interval` until `stop` turns true.
pub async fn run(
    store: Arc<dyn Store>,
    interval: Duration,
    tombstone_horizon: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let horizon_ms = tombstone_horizon.as_millis() as u64;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        loop {
            if *stop.borrow() {
                return;
            }
            let s = store.clone();
            let report =
                tokio::task::spawn_blocking(move || s.sweep(now_ms(), horizon_ms, SWEEP_BATCH))
                    .await;
            match report {
                Ok(Ok(r)) => {
                    if r.expired > 0 || r.tombstones_forgotten > 0 {
                        tracing::info!(
                            expired = r.expired,
                            tombstones_forgotten = r.tombstones_forgotten,
                            "swept"
                        );
                    }
                    if r.expired < SWEEP_BATCH && r.tombstones_forgotten < SWEEP_BATCH {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "sweeping failed; will retry");
                    break;
                }
                Err(_) => break,
            }
        }
    }
}
