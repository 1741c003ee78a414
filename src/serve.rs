//! Palisade's HTTP endpoints (metrics and health, the audit webhook) on hyper's HTTP/1.1
//! server, bounded so that no client can exhaust the process: a fixed number of connections at
//! once (more are closed at accept), headers within a timeout (slowloris), the whole exchange
//! within a deadline, one request per connection, and bodies refused beyond a size (by their
//! Content-Length before reading, or while reading a chunked one).

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What one endpoint accepts.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; further ones are closed at once.
    pub max_connections: usize,
    /// Until the request's headers (and a TLS handshake) are complete.
    pub header_timeout: Duration,
    /// The whole exchange, body included.
    pub request_timeout: Duration,
    /// The largest request body read.
    pub max_body: usize,
}

pub type Reply = Response<Full<Bytes>>;

pub fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("a static status and header always build")
}

pub fn text(status: StatusCode, body: &str) -> Reply {
    reply(status, "text/plain; charset=utf-8", body.to_string())
}

/// How connections are turned into streams: plain TCP, or TLS (and what to do about a refused
/// handshake: the webhook counts it).
#[derive(Clone)]
pub enum Transport {
    Plain,
    Tls {
        acceptor: tokio_rustls::TlsAcceptor,
        on_refused: Arc<dyn Fn(std::net::SocketAddr) + Send + Sync>,
    },
}

/// One request as a handler sees it: the body is complete and within the limit.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub body: Bytes,
}

/// Serves `handler` on `listener` until the task is dropped.
pub async fn serve<H, F>(listener: TcpListener, transport: Transport, limits: Limits, handler: H)
where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "endpoint busy: connection closed");
            continue;
        };
        let (transport, handler) = (transport.clone(), handler.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let exchange = async {
                match transport {
                    Transport::Plain => connection(tcp, limits, handler).await,
                    Transport::Tls {
                        acceptor,
                        on_refused,
                    } => match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp))
                        .await
                    {
                        Ok(Ok(stream)) => connection(stream, limits, handler).await,
                        _ => on_refused(peer),
                    },
                }
            };
            if tokio::time::timeout(limits.request_timeout, exchange)
                .await
                .is_err()
            {
                tracing::debug!(%peer, "endpoint: request took too long; connection closed");
            }
        });
    }
}

async fn connection<S, H, F>(stream: S, limits: Limits, handler: H)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handle(req, limits.max_body, handler).await) }
    });
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(false)
        .max_buf_size(64 << 10)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle<H, F>(req: hyper::Request<Incoming>, max_body: usize, handler: H) -> Reply
where
    H: Fn(Request) -> F,
    F: Future<Output = Reply>,
{
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
    }
    let body = match Limited::new(body, max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
        }
        Err(_) => return text(StatusCode::BAD_REQUEST, "unreadable request body\n"),
    };
    handler(Request {
        method: parts.method,
        path: parts.uri.path().to_string(),
        body,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const LIMITS: Limits = Limits {
        max_connections: 4,
        header_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_secs(2),
        max_body: 1024,
    };

    async fn start() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            Transport::Plain,
            LIMITS,
            |req: Request| async move {
                text(
                    StatusCode::OK,
                    &format!("{} {} {}\n", req.method, req.path, req.body.len()),
                )
            },
        ));
        addr
    }

    /// Sends `head` (and `body`), returns the status line, or "" when the server closed first.
    async fn exchange(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let _ = s.write_all(body).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    }

    #[tokio::test]
    async fn a_request_is_served_once_and_the_connection_closed() {
        let addr = start().await;
        let status = exchange(
            addr,
            "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
            b"abc",
        )
        .await;
        assert_eq!(status, "HTTP/1.1 200 OK");
    }

    #[tokio::test]
    async fn a_slowloris_client_is_cut_off_and_others_are_still_served() {
        let addr = start().await;
        let started = Instant::now();
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let dripping = async {
            // One header byte every 50 ms: never a complete header block.
            for _ in 0..100 {
                if slow.write_all(b"X").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let other = exchange(addr, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", b"");
        let ((), status) = tokio::join!(dripping, other);
        assert_eq!(status, "HTTP/1.1 200 OK", "served beside the slow client");
        let mut rest = Vec::new();
        let _ = slow.read_to_end(&mut rest).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the slow client was cut off after {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn bodies_beyond_the_limit_are_refused_without_being_read() {
        let addr = start().await;
        let started = Instant::now();
        // Declared: refused from the headers alone (the 100 MB never sent).
        let declared = exchange(
            addr,
            "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 104857600\r\n\r\n",
            b"",
        )
        .await;
        assert_eq!(declared, "HTTP/1.1 413 Payload Too Large");
        // Chunked: refused once the limit is passed, not after 100 MB.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 4096, "a".repeat(4096));
        let mut sent = 0usize;
        while sent < 100 << 20 {
            if s.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            sent += 4096;
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let status = String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        assert!(sent < 100 << 20, "the server read a 100 MB body");
        assert!(
            status.is_empty() || status == "HTTP/1.1 413 Payload Too Large",
            "{status}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed_at_once() {
        let addr = start().await;
        let mut idle = Vec::new();
        for _ in 0..LIMITS.max_connections {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
            idle.push(s);
        }
        // Every slot is taken once the server has accepted them: a new connection is closed
        // without an answer, at once.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let started = Instant::now();
            let refused = exchange(addr, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", b"").await;
            if refused.is_empty() {
                assert!(started.elapsed() < Duration::from_millis(250));
                break;
            }
            assert!(Instant::now() < deadline, "never refused: {refused}");
        }
        // Closed, they free their slots.
        drop(idle);
        let deadline = Instant::now() + Duration::from_secs(2);
        let served = loop {
            let status = exchange(addr, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", b"").await;
            if !status.is_empty() || Instant::now() > deadline {
                break status;
            }
        };
        assert_eq!(served, "HTTP/1.1 200 OK");
    }
}
