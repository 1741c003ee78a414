//! The audit webhook backend: the API server (`--audit-webhook-config-file`) POSTs batches of
//! audit events (`EventList`) here over HTTPS. Callers must present a client certificate
//! signed by the configured CA (the API server's audit-webhook client credentials); bodies are
//! bounded; each allowed request of a ServiceAccount is recorded in the shared usage.

use super::LearnState;
use crate::metrics::Metrics;
use crate::policy::rbac::learn::event::parse_event_list;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The largest batch accepted: the API server's default batch is 400 events of ~1 KiB at
/// Metadata level.
pub const MAX_BODY: usize = 8 << 20;
const MAX_HEADER: usize = 16 << 10;
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Files of the webhook's TLS: its serving certificate and key, and the CA its callers'
/// client certificates must chain to.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: String,
    pub key: String,
    pub client_ca: String,
}

pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("{}: {e}", files.cert))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", files.cert))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", files.cert));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| format!("{}: {e}", files.key))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&files.client_ca)
        .map_err(|e| format!("{}: {e}", files.client_ca))?
    {
        let ca = ca.map_err(|e| format!("{}: {e}", files.client_ca))?;
        roots
            .add(ca)
            .map_err(|e| format!("{}: {e}", files.client_ca))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate", files.client_ca));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("client CA {}: {e}", files.client_ca))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", files.cert))?;
    Ok(Arc::new(config))
}

fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves until the task is dropped. One request per connection.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    state: Arc<LearnState>,
    metrics: Arc<Metrics>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let Ok(Ok(mut stream)) = tokio::time::timeout(READ_TIMEOUT, acceptor.accept(tcp)).await
            else {
                // No client certificate, or not one of the CA's: the handshake fails here.
                metrics.count_audit_events("rejected", 1);
                tracing::debug!(%peer, "audit webhook: TLS handshake refused");
                return;
            };
            let reply = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
                Ok(Ok(body)) => handle(&body, &state, &metrics),
                Ok(Err(reply)) => reply,
                Err(_) => response("408 Request Timeout", "timeout\n"),
            };
            let _ = stream.write_all(&reply).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Reads one `POST /audit` with a Content-Length body; an error is the reply to send.
async fn read_request<S: AsyncReadExt + Unpin>(stream: &mut S) -> Result<Vec<u8>, Vec<u8>> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| response("400 Bad Request", "read error\n"))?;
        if n == 0 {
            return Err(response("400 Bad Request", "incomplete request\n"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEADER {
            return Err(response(
                "431 Request Header Fields Too Large",
                "headers too large\n",
            ));
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if method != "POST" {
        return Err(response("405 Method Not Allowed", "POST only\n"));
    }
    if path.split('?').next() != Some("/audit") {
        return Err(response("404 Not Found", "not found\n"));
    }
    let mut length: Option<usize> = None;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok();
            } else if k.trim().eq_ignore_ascii_case("transfer-encoding") {
                return Err(response(
                    "411 Length Required",
                    "chunked bodies are not accepted\n",
                ));
            }
        }
    }
    let Some(length) = length else {
        return Err(response("411 Length Required", "Content-Length required\n"));
    };
    if length > MAX_BODY {
        return Err(response("413 Payload Too Large", "batch too large\n"));
    }
    let mut body = buf.split_off(header_end);
    while body.len() < length {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| response("400 Bad Request", "read error\n"))?;
        if n == 0 {
            return Err(response(
                "400 Bad Request",
                "body shorter than Content-Length\n",
            ));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(body)
}

fn handle(body: &[u8], state: &LearnState, metrics: &Metrics) -> Vec<u8> {
    let items = match parse_event_list(body) {
        Ok(items) => items,
        Err(e) => {
            metrics.count_audit_events("invalid", 1);
            return response("400 Bad Request", &format!("{e}\n"));
        }
    };
    let (mut learned, mut denied, mut ignored, mut invalid) = (0u64, 0u64, 0u64, 0u64);
    let mut requests = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Ok(Some(r)) if r.allowed => {
                learned += 1;
                requests.push(r);
            }
            Ok(Some(r)) => {
                denied += 1;
                requests.push(r);
            }
            Ok(None) => ignored += 1,
            Err(e) => {
                invalid += 1;
                tracing::debug!(error = %e, "audit webhook: unreadable event");
            }
        }
    }
    state.record(&requests);
    for (result, n) in [
        ("learned", learned),
        ("denied", denied),
        ("ignored", ignored),
        ("invalid", invalid),
    ] {
        if n > 0 {
            metrics.count_audit_events(result, n);
        }
    }
    response("200 OK", "ok\n")
}
