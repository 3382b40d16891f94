//! The HTTP server edge shared by every server part: an accept loop that bounds connections and header
//! time and shuts down gracefully, bounded body reading, and the one mapping from errors to
//! `{"error": ...}` responses.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::http::{Response, StatusCode};
use warp::reject::Rejection;

/// The client's socket address, attached to each request by [`serve`]. It is used for rate
/// limiting in memory and never logged at the default level.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// An error answered to a client: a status and a message for `{"error": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What was wrong, said so that the client can fix it.
    pub message: String,
}

impl ApiError {
    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 413: the request or one of its parts is too large.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// 429: slow down.
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, message)
    }

    /// 503: storage unavailable or the relay is saturated.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// Any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// The JSON response.
    pub fn into_response(self) -> Response<Bytes> {
        json_response(
            self.status,
            serde_json::json!({ "error": self.message })
                .to_string()
                .into(),
        )
    }

    /// [`ApiError::into_response`] for a request whose body was not read: the connection
    /// closes after it (`Connection: close`), so that the client does not send its next
    /// request on a connection the server is about to drop.
    pub fn into_closing_response(self) -> Response<Bytes> {
        let mut response = self.into_response();
        response.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
        response
    }
}

/// A response with a JSON body.
pub fn json_response(status: StatusCode, body: Bytes) -> Response<Bytes> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body)
        .expect("static headers are valid")
}

/// How much of an over-limit body is read and thrown away before answering 413, so that a
/// client still writing its body receives the answer instead of a reset connection.
pub const DRAIN_LIMIT: u64 = 8 << 20;

/// Reads a request body of at most `limit` bytes within `timeout`. A body declared (by
/// `Content-Length`) or found to be over the limit is answered with 413: up to
/// [`DRAIN_LIMIT`] of it is read and discarded first, anything larger is refused at once.
pub async fn read_body<S, B>(
    content_length: Option<u64>,
    body: S,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let too_large = || ApiError::too_large(format!("request body is larger than {limit} bytes"));
    let declared_over = content_length.is_some_and(|n| n > limit as u64);
    if content_length.is_some_and(|n| n > limit as u64 + DRAIN_LIMIT) {
        return Err(too_large());
    }
    let read = async {
        let mut body = body;
        let capacity = content_length.unwrap_or(0).min(limit as u64) as usize;
        let mut buf = BytesMut::with_capacity(if declared_over { 0 } else { capacity });
        let mut seen = 0u64;
        let mut over = declared_over;
        while let Some(chunk) = body.next().await {
            let mut chunk =
                chunk.map_err(|_| ApiError::bad_request("the request body could not be read"))?;
            seen += chunk.remaining() as u64;
            if seen > limit as u64 {
                over = true;
                if seen > limit as u64 + DRAIN_LIMIT {
                    break;
                }
            }
            if over {
                chunk.advance(chunk.remaining());
                continue;
            }
            while chunk.has_remaining() {
                let part = chunk.chunk();
                buf.extend_from_slice(part);
                let n = part.len();
                chunk.advance(n);
            }
        }
        if over {
            return Err(too_large());
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the request body was not received in time",
            ))
        })
}

/// Maps warp's own rejections (no route, wrong method, bad header) to JSON errors.
pub async fn recover(rejection: Rejection) -> Result<Response<Bytes>, Infallible> {
    let err = if rejection.is_not_found() {
        ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: the API endpoints take POST, /status takes GET",
        )
    } else if rejection.find::<warp::reject::InvalidHeader>().is_some() {
        ApiError::bad_request("a request header has an invalid value")
    } else {
        ApiError::bad_request("the request could not be understood")
    };
    Ok(err.into_response())
}

/// Limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Most open connections; further ones are closed at once.
    pub max_connections: usize,
    /// Most open connections from one client network (an IPv4 address, an IPv6 /64).
    pub max_connections_per_ip: usize,
    /// Time a client has to send its request headers.
    pub header_timeout: Duration,
    /// Time a client has to take [`crate::netlimits::MIN_PROGRESS_BYTES`] of an answer
    /// that waits for it (see [`crate::netlimits::WriteDeadline`]).
    pub write_timeout: Duration,
    /// How long a graceful shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

/// Serves `filter` on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish (up to `drain_timeout`), closes the connections still open and
/// returns.
pub async fn serve(
    listener: TcpListener,
    filter: BoxedFilter<(Response<Bytes>,)>,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let per_client = crate::netlimits::ConnectionCounter::new(limits.max_connections_per_ip);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Every connection's task, so that those still open when the drain ends can be stopped:
    // each holds what the routes hold, the store included, which closes only once all are
    // gone.
    let mut tasks = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    // Out of file descriptors and similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!("connection limit reached; closing a new connection");
            drop(stream);
            continue;
        };
        let Some(counted) = per_client.admit(addr.ip()) else {
            tracing::debug!("connection limit of one address reached; closing a new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc = warp::service(filter.clone());
        let hyper_svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ClientAddr(addr));
                svc.clone().call(req)
            });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true)
            .serve_connection(
                TokioIo::new(crate::netlimits::WriteDeadline::new(
                    stream,
                    limits.write_timeout,
                )),
                hyper_svc,
            );
        let conn = graceful.watch(conn);
        tasks.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop((permit, counted));
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = tasks.len(),
            "some connections did not finish within the shutdown timeout; closing them"
        );
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}
