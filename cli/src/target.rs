//! Which node to connect to: the `--addr` given, or the first node of a
//! dispatch answer (`{"nodes":[{"addr":…}, …]}`, best first) fetched from
//! `--dispatch`.

use anyhow::{bail, Context, Result};

use crate::args::Global;

/// The client address to connect to.
pub fn node_addr(global: &Global) -> Result<String> {
    let Some(url) = &global.dispatch else {
        return Ok(global.addr.clone());
    };
    let body = ureq::get(url)
        .call()
        .with_context(|| format!("GET {url}"))?
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the dispatch answer from {url}"))?;
    let answer: serde_json::Value =
        serde_json::from_str(&body).with_context(|| format!("dispatch answer from {url}"))?;
    match answer["nodes"][0]["addr"].as_str() {
        Some(addr) => Ok(addr.to_string()),
        None => bail!("dispatch at {url} listed no node: {body}"),
    }
}
