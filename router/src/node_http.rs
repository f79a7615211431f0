//! The HTTP client a router reaches the server nodes' control planes with:
//! health pulls and the node admin calls behind the cluster admin API.
//! Straight to the nodes (never through a proxy from the environment),
//! plain HTTP to nodes that serve it and HTTPS to nodes registered with
//! `control_tls`, trusting only the CA in the router's
//! `control_tls_ca_file` (without one, HTTPS to a node fails and says so).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// A client whose requests each give up after `timeout` (connecting,
/// sending and reading the whole answer).
pub fn client(timeout: Duration, ca_file: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let tls = corecast_cluster::link::tls::client_config(ca_file)?;
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .tls_backend_preconfigured(tls)
        .build()
        .context("building the HTTP client for the nodes' control planes")
}
