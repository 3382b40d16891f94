//! One TLS connection of the STUN service: frames told apart by their first byte (STUN
//! messages framed by their header, rendezvous lines starting with `{`), Binding answered with
//! the TCP peer's address, and the rendezvous session: hello, challenge, auth, then offers and
//! answers through the hub. Anything else closes the stream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};
use tokio::sync::{Notify, mpsc, watch};

use super::binding::{self, Verdict};
use super::rendezvous::{Hub, Outgoing, SESSION_QUEUE, SessionHandle};
use crate::crypto::challenge;
use crate::crypto::jose::b64;
use crate::proto::PublicKey;
use crate::proto::key::ABSOLUTE_MIN_KEY_BITS;
use crate::proto::rendezvous::{
    ClientFrame, MAX_FRAME_BYTES, NONCE_BYTES, ServerFrame, auth_input,
};
use crate::proto::stun::{FramingError, HEADER_BYTES, MAX_ANSWER_BYTES, framed_length};

/// What every connection shares.
pub struct Shared {
    /// The hub.
    pub hub: Mutex<Hub>,
    /// The leaf certificate (DER) that signatures are bound to.
    pub certificate: Vec<u8>,
    /// Time for the TLS handshake plus authentication; connections that never authenticate
    /// (plain STUN clients) are closed after it.
    pub handshake_timeout: Duration,
    /// Silence allowed on an authenticated connection.
    pub idle_timeout: Duration,
    /// Session ids.
    pub next_id: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn hub(&self) -> std::sync::MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One frame from the client.
#[derive(Debug)]
enum Frame {
    Stun(Vec<u8>),
    Line(Vec<u8>),
}

/// Why the stream is closed.
#[derive(Debug, thiserror::Error)]
enum Broken {
    #[error("{0}")]
    Stun(#[from] FramingError),
    #[error("frame longer than {MAX_FRAME_BYTES} bytes")]
    Oversized,
    #[error("neither STUN nor a rendezvous frame")]
    Unknown,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame; `None` at a clean end of stream.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Result<Option<Frame>, Broken> {
    let first = match r.fill_buf().await?.first() {
        None => return Ok(None),
        Some(b) => *b,
    };
    if first & 0xC0 == 0 {
        let mut header = [0u8; HEADER_BYTES];
        r.read_exact(&mut header).await?;
        let total = framed_length(&header)?;
        let mut message = vec![0u8; total];
        message[..HEADER_BYTES].copy_from_slice(&header);
        r.read_exact(&mut message[HEADER_BYTES..]).await?;
        return Ok(Some(Frame::Stun(message)));
    }
    if first != b'{' {
        return Err(Broken::Unknown);
    }
    let mut line = Vec::new();
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Err(Broken::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let (take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if line.len() + take > MAX_FRAME_BYTES {
            return Err(Broken::Oversized);
        }
        line.extend_from_slice(&available[..take]);
        r.consume(take);
        if done {
            return Ok(Some(Frame::Line(line)));
        }
    }
}

enum State {
    Fresh,
    Challenged {
        key: PublicKey,
        nonce: [u8; NONCE_BYTES],
    },
    Ready {
        key: PublicKey,
        id: u64,
    },
}

/// What to do after a frame.
enum Next {
    Continue,
    /// Send this error, then close.
    Close(String),
    /// The client's queue stayed full: close.
    NotReading,
}

/// Longest one write to a client may take before the client counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one TLS stream until it ends, breaks the protocol, times out, is killed by the hub,
/// or the service stops. `accepted` is when its TCP connection was accepted: the handshake
/// timeout counts from then, TLS handshake included.
pub async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    accepted: Instant,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(16 * 1024, read);
    let (tx, mut rx) = mpsc::channel::<Outgoing>(SESSION_QUEUE);
    let kill = Arc::new(Notify::new());
    // A client that stops reading stalls the writes; past WRITE_TIMEOUT it is given up on
    // (the reader sees the queue full and closes too).
    let mut writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            let wrote = tokio::time::timeout(WRITE_TIMEOUT, async {
                write.write_all(&bytes).await?;
                if rx.is_empty() {
                    write.flush().await?;
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(wrote, Ok(Ok(()))) {
                return;
            }
        }
        let _ = tokio::time::timeout(WRITE_TIMEOUT, write.shutdown()).await;
    });
    let started = accepted;
    let mut state = State::Fresh;
    let mut why = "end of stream";
    loop {
        let limit = match state {
            State::Ready { .. } => shared.idle_timeout,
            _ => shared
                .handshake_timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1)),
        };
        let frame = tokio::select! {
            r = tokio::time::timeout(limit, read_frame(&mut reader)) => r,
            () = kill.notified() => { why = "not reading"; break; }
            _ = stop.wait_for(|s| *s) => { why = "shutting down"; break; }
        };
        let frame = match frame {
            Err(_) => {
                why = "timed out";
                break;
            }
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "closing a TLS connection");
                if matches!(e, Broken::Oversized) {
                    let _ = tx.try_send(error_line(e.to_string()));
                }
                why = "protocol error";
                break;
            }
            Ok(Ok(Some(frame))) => frame,
        };
        let next = match frame {
            Frame::Stun(message) => {
                let mut out = [0u8; MAX_ANSWER_BYTES];
                match binding::answer(&message, peer, &mut out) {
                    Verdict::Reply(n) => queue(&tx, out[..n].to_vec()).await,
                    _ => Next::Continue,
                }
            }
            Frame::Line(line) => {
                handle_line(&line, peer.ip(), &mut state, &shared, &tx, &kill).await
            }
        };
        match next {
            Next::Continue => {}
            Next::Close(error) => {
                let _ = tx.try_send(error_line(error));
                why = "protocol error";
                break;
            }
            Next::NotReading => {
                why = "not reading";
                break;
            }
        }
    }
    if let State::Ready { key, id } = &state {
        shared.hub().unregister(key, *id);
    }
    tracing::debug!(%peer, why, "TLS connection closed");
    drop(tx);
    // Let the writer send what is queued (the last error), within reason; then it goes, with
    // the socket.
    if tokio::time::timeout(Duration::from_secs(2), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// Queues a frame for the client, waiting while its queue is full (a client that sends faster
/// than it reads is slowed down) but at most [`WRITE_TIMEOUT`]: then it is not reading, and is
/// closed (waiting on would hold this connection, and its slot, for good).
async fn queue(tx: &mpsc::Sender<Outgoing>, frame: Outgoing) -> Next {
    match tx.send_timeout(frame, WRITE_TIMEOUT).await {
        Ok(()) => Next::Continue,
        Err(_) => Next::NotReading,
    }
}

fn error_line(error: String) -> Outgoing {
    ServerFrame::Error { error, id: None }
        .to_line()
        .into_bytes()
}

fn reply(frame: ServerFrame) -> Outgoing {
    frame.to_line().into_bytes()
}

async fn handle_line(
    line: &[u8],
    ip: std::net::IpAddr,
    state: &mut State,
    shared: &Shared,
    tx: &mpsc::Sender<Outgoing>,
    kill: &Arc<Notify>,
) -> Next {
    let frame: ClientFrame = match serde_json::from_slice(line) {
        Ok(f) => f,
        Err(e) => return Next::Close(format!("not a rendezvous frame: {e}")),
    };
    match (frame, &*state) {
        (ClientFrame::Hello { key }, State::Fresh) => {
            let key = match PublicKey::parse(&key, ABSOLUTE_MIN_KEY_BITS) {
                Ok(k) => k,
                Err(e) => return Next::Close(format!("hello: {e}")),
            };
            let mut nonce = [0u8; NONCE_BYTES];
            crate::crypto::random_bytes(&mut nonce);
            *state = State::Challenged { key, nonce };
            queue(tx, reply(ServerFrame::Challenge { nonce: b64(&nonce) })).await
        }
        (ClientFrame::Auth { signature }, State::Challenged { key, nonce }) => {
            let input = auth_input(nonce, &shared.certificate);
            if !challenge::verify(key, &input, &signature) {
                return Next::Close(
                    "the signature does not verify for this key, challenge and certificate".into(),
                );
            }
            let key = key.clone();
            let id = shared
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let ready = ServerFrame::Ready {
                fingerprint: key.fingerprint().to_string(),
            };
            if tx.try_send(reply(ready)).is_err() {
                return Next::Close("not reading".into());
            }
            shared.hub().register(
                &key,
                SessionHandle {
                    id,
                    tx: tx.clone(),
                    kill: kill.clone(),
                },
                ip,
            );
            tracing::debug!(key = %key.fingerprint().short(), "rendezvous session ready");
            *state = State::Ready { key, id };
            Next::Continue
        }
        (ClientFrame::Hello { .. } | ClientFrame::Auth { .. }, State::Ready { .. }) => {
            Next::Close("already authenticated".into())
        }
        (ClientFrame::Hello { .. }, State::Challenged { .. }) => {
            Next::Close("hello was already sent; send auth".into())
        }
        (_, State::Fresh | State::Challenged { .. }) => {
            Next::Close("authenticate first: send hello, then auth".into())
        }
        (ClientFrame::Ping, State::Ready { .. }) => queue(tx, reply(ServerFrame::Pong)).await,
        (ClientFrame::Offer { to, id, payload }, State::Ready { key, .. }) => {
            let result = match (PublicKey::parse(&to, ABSOLUTE_MIN_KEY_BITS), valid_id(&id)) {
                (Err(e), _) => Err(format!("to: {e}")),
                (_, false) => Err("id must be a UUID".into()),
                (Ok(peer), true) => shared
                    .hub()
                    .offer(key, &peer, id.clone(), payload, Instant::now())
                    .map_err(|e| e.to_string()),
            };
            let frame = match result {
                Ok(()) => ServerFrame::Queued { id },
                Err(error) => ServerFrame::Error {
                    error,
                    id: Some(id),
                },
            };
            queue(tx, reply(frame)).await
        }
        (ClientFrame::Answer { to, id, payload }, State::Ready { key, .. }) => {
            let result = match PublicKey::parse(&to, ABSOLUTE_MIN_KEY_BITS) {
                Err(e) => Err(format!("to: {e}")),
                Ok(offerer) => shared
                    .hub()
                    .answer(key, &offerer, id.clone(), payload)
                    .map_err(|e| e.to_string()),
            };
            match result {
                Ok(()) => Next::Continue,
                Err(error) => {
                    queue(
                        tx,
                        reply(ServerFrame::Error {
                            error,
                            id: Some(id),
                        }),
                    )
                    .await
                }
            }
        }
    }
}

/// Whether an offer id is a UUID (any version, hyphenated, as the protocol says).
fn valid_id(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::try_parse(id).is_ok()
}
