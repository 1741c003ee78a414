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
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The largest batch accepted: the API server's default batch is 400 events of ~1 KiB at
/// Metadata level.
pub const MAX_BODY: usize = 8 << 20;
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

/// What the webhook accepts: the API server's batches, from a few connections at once.
pub const LIMITS: crate::serve::Limits = crate::serve::Limits {
    max_connections: 32,
    header_timeout: Duration::from_secs(10),
    request_timeout: READ_TIMEOUT,
    max_body: MAX_BODY,
};

/// Serves `POST /audit` until the task is dropped. One request per connection.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    state: Arc<LearnState>,
    metrics: Arc<Metrics>,
) {
    use crate::serve::{text, Transport};
    use http::{Method, StatusCode};
    let refused = metrics.clone();
    let transport = Transport::Tls {
        acceptor: TlsAcceptor::from(tls),
        // No client certificate, or not one of the CA's: the handshake fails.
        on_refused: Arc::new(move |peer| {
            refused.count_audit_events("rejected", 1);
            tracing::debug!(%peer, "audit webhook: TLS handshake refused");
        }),
    };
    crate::serve::serve(listener, transport, LIMITS, move |req| {
        let (state, metrics) = (state.clone(), metrics.clone());
        async move {
            if req.method != Method::POST {
                return text(StatusCode::METHOD_NOT_ALLOWED, "POST only\n");
            }
            if req.path != "/audit" {
                return text(StatusCode::NOT_FOUND, "not found\n");
            }
            handle(&req.body, &state, &metrics)
        }
    })
    .await
}

fn handle(body: &[u8], state: &LearnState, metrics: &Metrics) -> crate::serve::Reply {
    use crate::serve::text;
    use http::StatusCode;
    let items = match parse_event_list(body) {
        Ok(items) => items,
        Err(e) => {
            metrics.count_audit_events("invalid", 1);
            return text(StatusCode::BAD_REQUEST, &format!("{e}\n"));
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
    text(StatusCode::OK, "ok\n")
}
