//! Group commit: one thread owns the store's write path and stores every pending `/send` in one
//! batch, so throughput grows with load while each 200 still means "on disk".
//!
//! Two threads form a pipeline: the writer stores batch after batch without waiting for the
//! disk ([`Store::put_batch_deferred`]), and the syncer flushes whatever has been written
//! ([`Store::sync`], one flush for every batch that waits) and only then answers the batches'
//! senders. The writer tells the syncer as soon as a batch's packets are in the log, before
//! their index is built, so the disk works on a batch while it is being indexed.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::clock::now_ms;
use super::store::{NewPacket, PutLimits, PutOutcome, Store, SyncTicket};

/// Most packets stored in one batch.
pub const MAX_BATCH_PACKETS: usize = 1024;
/// Most packet bytes stored in one batch.
pub const MAX_BATCH_BYTES: usize = 32 << 20;
/// Writes waiting for the writer before senders wait in turn (backpressure).
pub const QUEUE_CAPACITY: usize = 4096;

/// The writer could not store the packet.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage unavailable: {0}")]
pub struct WriteError(pub String);

type Reply = oneshot::Sender<Result<PutOutcome, WriteError>>;

struct Job {
    packet: NewPacket,
    reply: Reply,
}

/// What the writer thread is told.
enum Message {
    /// Store a packet.
    Put(Job),
    /// Take no more packets: store those queued, then end.
    Close,
}

/// A stored batch whose senders wait for the disk.
struct Unsynced {
    ticket: SyncTicket,
    replies: Vec<Reply>,
    outcomes: Vec<PutOutcome>,
}

/// Handle to the writer thread; cheap to clone. The thread ends when every handle is dropped
/// and the queue is drained, or once [`WriterThread::stop`] is called.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Message>,
}

/// The writer thread itself, to stop it.
pub struct WriterThread {
    tx: mpsc::Sender<Message>,
    handle: JoinHandle<()>,
}

impl WriterThread {
    /// Stops the writer (blocking): packets already queued are stored and answered, later
    /// ones are refused ("the writer has stopped"), and this returns once the thread ended.
    /// Handles may still be held (by a call to a slow peer at shutdown, say): they no
    /// longer keep the thread, and the store, busy.
    pub fn stop(self) {
        let _ = self.tx.blocking_send(Message::Close);
        drop(self.tx);
        let _ = self.handle.join();
    }
}

impl Writer {
    /// Starts the writer thread over `store`.
    pub fn spawn(store: Arc<dyn Store>, limits: PutLimits) -> (Self, WriterThread) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let handle = std::thread::Builder::new()
            .name("jasper-writer".into())
            .spawn(move || run(store, limits, rx))
            .expect("spawning the writer thread");
        (Self { tx: tx.clone() }, WriterThread { tx, handle })
    }

    /// Queues a packet and waits until it is stored and on disk.
    pub async fn put(&self, packet: NewPacket) -> Result<PutOutcome, WriteError> {
        let (reply, answer) = oneshot::channel();
        if self
            .tx
            .send(Message::Put(Job { packet, reply }))
            .await
            .is_err()
        {
            return Err(WriteError("the writer has stopped".into()));
        }
        answer.await.unwrap_or_else(|_| {
            Err(WriteError(
                "the writer stopped before storing the packet".into(),
            ))
        })
    }

    /// Queues packets from a blocking thread and waits until all are on disk (they share
    /// transactions with everything else waiting). Outcomes are in input order.
    pub fn put_many_blocking(
        &self,
        packets: Vec<NewPacket>,
    ) -> Vec<Result<PutOutcome, WriteError>> {
        let mut answers = Vec::with_capacity(packets.len());
        for packet in packets {
            let (reply, answer) = oneshot::channel();
            if self
                .tx
                .blocking_send(Message::Put(Job { packet, reply }))
                .is_err()
            {
                answers.push(None);
            } else {
                answers.push(Some(answer));
            }
        }
        answers
            .into_iter()
            .map(|a| match a {
                Some(answer) => answer.blocking_recv().unwrap_or_else(|_| {
                    Err(WriteError(
                        "the writer stopped before storing the packet".into(),
                    ))
                }),
                None => Err(WriteError("the writer has stopped".into())),
            })
            .collect()
    }

    /// Fraction of the queue in use, 0.0–1.0 (part of the relay's load). Read from the channel
    /// itself: a count kept beside it drifted up whenever a sender gave up waiting for room
    /// (a client that disconnected while the queue was full).
    pub fn queue_load(&self) -> f64 {
        let waiting = self.tx.max_capacity() - self.tx.capacity();
        waiting as f64 / QUEUE_CAPACITY as f64
    }
}

fn run(store: Arc<dyn Store>, limits: PutLimits, mut rx: mpsc::Receiver<Message>) {
    let (sync_tx, sync_rx) = std::sync::mpsc::channel::<ToSync>();
    let syncer = {
        let store = store.clone();
        std::thread::Builder::new()
            .name("jasper-sync".into())
            .spawn(move || sync_and_answer(store, sync_rx))
            .expect("spawning the sync thread")
    };
    // Once closed, the channel still yields what was queued, then `None`.
    while let Some(message) = rx.blocking_recv() {
        let Message::Put(first) = message else {
            rx.close();
            continue;
        };
        let mut bytes = first.packet.json.len();
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH_PACKETS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(Message::Put(job)) => {
                    bytes += job.packet.json.len();
                    jobs.push(job);
                }
                Ok(Message::Close) => rx.close(),
                Err(_) => break,
            }
        }
        let (packets, replies): (Vec<_>, Vec<_>) =
            jobs.into_iter().map(|j| (j.packet, j.reply)).unzip();
        let flush_now = sync_tx.clone();
        let result = store.put_batch_deferred(&packets, limits, now_ms(), &mut |ticket| {
            let _ = flush_now.send(ToSync::Flush(ticket));
        });
        match result {
            Ok((outcomes, ticket)) => {
                tracing::debug!(batch = packets.len(), "stored, waiting for the disk");
                let batch = Unsynced {
                    ticket,
                    replies,
                    outcomes,
                };
                if let Err(std::sync::mpsc::SendError(ToSync::Answer(batch))) =
                    sync_tx.send(ToSync::Answer(batch))
                {
                    answer_all(batch.replies, &WriteError("the sync thread stopped".into()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = packets.len(), "storing packets failed");
                answer_all(replies, &WriteError(e.to_string()));
            }
        }
    }
    drop(sync_tx);
    let _ = syncer.join();
}

/// What the writer tells the sync thread.
enum ToSync {
    /// A batch's packets are in the log: start flushing (its index is being built).
    Flush(SyncTicket),
    /// A batch is stored: answer its senders once it is on disk.
    Answer(Unsynced),
}

/// Flushes as soon as packets are in the log, once for everything written by then, and answers
/// each stored batch once a flush covers it.
///
/// A batch is answered before the thread flushes for batches written after it: when the
/// writer indexes faster than the disk flushes, the messages waiting here are often "batch k is
/// stored" and "batch k+1 is in the log", and batch k, already covered by the flush that just
/// returned, must not wait for k+1's.
fn sync_and_answer(store: Arc<dyn Store>, rx: std::sync::mpsc::Receiver<ToSync>) {
    while let Ok(first) = rx.recv() {
        let mut flush_to = SyncTicket::default();
        let mut batches = Vec::new();
        for message in std::iter::once(first).chain(rx.try_iter()) {
            match message {
                ToSync::Flush(ticket) => flush_to = flush_to.max(ticket),
                ToSync::Answer(batch) => batches.push(batch),
            }
        }
        for batch in batches {
            // Returns at once when an earlier flush covered the batch (usually: it ran while
            // the batch was being indexed); else flushes everything written by now. It refuses
            // a batch stored before the store was reopened after a failure (see
            // `store::reopen`), which no flush covered.
            match store.sync(batch.ticket) {
                Ok(()) => {
                    for (reply, outcome) in batch.replies.into_iter().zip(batch.outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "flushing stored packets failed");
                    answer_all(batch.replies, &WriteError(e.to_string()));
                }
            }
        }
        // Packets whose index is being built: flush them now so their answers find them on
        // disk. A failure here is the store's to remember; their batches hear of it above.
        if let Err(e) = store.sync(flush_to) {
            tracing::debug!(error = %e, "early flush failed");
        }
    }
}

fn answer_all(replies: Vec<Reply>, err: &WriteError) {
    for reply in replies {
        let _ = reply.send(Err(err.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::store::conformance::packet;

    #[tokio::test]
    async fn a_sender_that_gives_up_waiting_for_room_leaves_no_load_behind() {
        let (tx, mut rx) = mpsc::channel(QUEUE_CAPACITY);
        let writer = Writer { tx };
        for n in 0..QUEUE_CAPACITY {
            let (reply, _) = oneshot::channel();
            writer
                .tx
                .try_send(Message::Put(Job {
                    packet: packet(n as u32, 1, 1),
                    reply,
                }))
                .unwrap();
        }
        assert_eq!(writer.queue_load(), 1.0);
        // A client disconnects while its packet waits for room: the future is dropped.
        let waiting = writer.put(packet(u32::MAX, 1, 1));
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), waiting)
                .await
                .is_err()
        );
        while rx.try_recv().is_ok() {}
        assert_eq!(writer.queue_load(), 0.0, "an empty queue is no load");
    }
}
