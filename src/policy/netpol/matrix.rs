//! Truth tables: every source against every destination port, as cyclonus and the real-node
//! probes compute them.

use super::cluster::{Cluster, Endpoint};
use super::compile::Protocol;

/// A destination and a port to connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub to: Endpoint,
    pub port: u16,
    pub protocol: Protocol,
}

/// Every declared container port of every pod that policies can select (host-network pods
/// share the node's ports and are left out).
pub fn declared_columns(cluster: &Cluster) -> Vec<Column> {
    let mut cols = Vec::new();
    for (i, pod) in cluster.pods.iter().enumerate() {
        if pod.host_network {
            continue;
        }
        for p in &pod.ports {
            cols.push(Column {
                to: Endpoint::Pod(i),
                port: p.port,
                protocol: p.protocol,
            });
        }
    }
    cols
}

/// One cell: (egress of the source allows, ingress of the destination allows).
pub type Cell = (bool, bool);

/// Row-major: `rows.len() * columns.len()` cells.
pub fn truth_table(cluster: &Cluster, rows: &[Endpoint], columns: &[Column]) -> Vec<Cell> {
    let mut out = Vec::with_capacity(rows.len() * columns.len());
    for &from in rows {
        for c in columns {
            out.push(cluster.allows(from, c.to, c.port, c.protocol));
        }
    }
    out
}
