//! The connection of `palisade audit --cluster`: a kubeconfig (or the in-cluster service
//! account) and a small runtime for the list requests of [`palisade::live`].

use palisade::live::{self, ReadError, ReadSummary};
use palisade::manifest::Diagnostic;
use palisade::policy::object::Object;
use std::path::Path;

pub struct Target<'a> {
    pub kubeconfig: Option<&'a Path>,
    pub context: Option<&'a str>,
}

pub struct Session {
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    config: kube::Config,
    server: String,
}

impl Session {
    pub fn connect(target: &Target<'_>) -> Result<Session, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        let options = kube::config::KubeConfigOptions {
            context: target.context.map(str::to_string),
            ..Default::default()
        };
        let config = runtime.block_on(async {
            match target.kubeconfig {
                Some(path) => {
                    let file = kube::config::Kubeconfig::read_from(path)
                        .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
                    kube::Config::from_custom_kubeconfig(file, &options)
                        .await
                        .map_err(|e| format!("kubeconfig {}: {e}", path.display()))
                }
                None if target.context.is_some() => kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|e| format!("kubeconfig: {e}")),
                None => kube::Config::infer().await.map_err(|e| {
                    format!("no cluster to audit (KUBECONFIG, ~/.kube/config or in-cluster): {e}")
                }),
            }
        })?;
        let server = config.cluster_url.to_string();
        let client = {
            // Building a client needs the runtime's context (its connector spawns tasks).
            let _entered = runtime.enter();
            kube::Client::try_from(config.clone())
                .map_err(|e| format!("a client for {server}: {e}"))?
        };
        Ok(Session {
            runtime,
            client,
            config,
            server,
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn api_server_endpoints(&self) -> Result<Vec<(std::net::IpAddr, u16)>, Diagnostic> {
        self.runtime
            .block_on(live::api_server_endpoints(&self.client))
    }

    /// The control plane as the API server shows it (`palisade control-plane`).
    pub fn control_plane(&self) -> Result<Vec<palisade::node::NodeReport>, String> {
        self.runtime.block_on(palisade::node::api_view::inspect(
            &self.client,
            &self.config,
        ))
    }

    pub fn read(
        &self,
        page_size: u32,
        sink: &mut dyn FnMut(Object),
        diags: &mut Vec<Diagnostic>,
    ) -> Result<ReadSummary, ReadError> {
        self.runtime
            .block_on(live::read(&self.client, page_size, sink, diags))
    }
}
