//! The operator's Kubernetes client: kube's default stack, with every `429 Too Many Requests`
//! counted before the retry layer retries it. kube retries 429s itself (honouring the API
//! server's `Retry-After`, as API Priority and Fairness asks), so without this a throttled
//! operator would only look slow.

use crate::metrics::Metrics;
use kube::client::retry::RetryPolicy;
use kube::client::ClientBuilder;
use kube::{Client, Config};
use std::sync::Arc;
use tower::buffer::BufferLayer;
use tower::retry::RetryLayer;
use tower::util::MapResponseLayer;

pub async fn client(metrics: &Arc<Metrics>) -> Result<Client, kube::Error> {
    let mut config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    // The same retry as kube's default, moved outside the counter so it sees every attempt.
    config.default_retry = false;
    let throttled = metrics.throttled.clone();
    let count = MapResponseLayer::new(move |response: http::Response<_>| {
        if response.status() == http::StatusCode::TOO_MANY_REQUESTS {
            throttled.inc();
        }
        response
    });
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&count)
        // The retry clones the service it wraps; the boxed stack is not Clone, a buffer is.
        .with_layer(&BufferLayer::new(1024))
        .with_layer(&RetryLayer::new(RetryPolicy::server_retry()))
        .build())
}
