//! The corecast admin API as the harness uses it: `POST /v1/admin/broadcast`
//! and `POST /v1/admin/groups` with the admin key, and reading counters from
//! `GET /metrics`. Only the
//! control address given on the command line is contacted.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// A client for one server's control address.
pub struct Admin {
    control: SocketAddr,
    key: Option<String>,
    agent: ureq::Agent,
}

impl Admin {
    /// A client for `control`, authenticating with `key` where needed.
    pub fn new(control: SocketAddr, key: Option<String>) -> Admin {
        let config = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build();
        Admin { control, key, agent: config.into() }
    }

    /// Broadcasts `payload` to every connection of the server.
    pub fn broadcast(&self, payload: &[u8]) -> Result<()> {
        let Some(key) = &self.key else {
            bail!("broadcast needs the admin key: --admin-key or CORECAST_ADMIN_KEY");
        };
        let url = format!("http://{}/v1/admin/broadcast", self.control);
        let response = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {key}"))
            .send(payload)
            .with_context(|| format!("POST {url}"))?;
        if response.status() != 200 {
            bail!("POST {url}: HTTP {}", response.status());
        }
        Ok(())
    }

    /// Creates group `group` with `members` (chat scenario).
    pub fn create_group(&self, group: &str, members: &[String]) -> Result<()> {
        let Some(key) = &self.key else {
            bail!("groups need the admin key: --admin-key or CORECAST_ADMIN_KEY");
        };
        let url = format!("http://{}/v1/admin/groups", self.control);
        let body = serde_json::json!({ "group": group, "members": members }).to_string();
        let response = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {key}"))
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .with_context(|| format!("POST {url}"))?;
        if response.status() != 201 {
            bail!("POST {url}: HTTP {}", response.status());
        }
        Ok(())
    }

    /// One authenticated `GET` of an admin path, for timing it; fails on
    /// anything but HTTP 200.
    pub fn get(&self, path: &str) -> Result<()> {
        let Some(key) = &self.key else {
            bail!("the admin API needs the admin key: --admin-key or CORECAST_ADMIN_KEY");
        };
        let url = format!("http://{}{path}", self.control);
        let mut response = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {key}"))
            .call()
            .with_context(|| format!("GET {url}"))?;
        if response.status() != 200 {
            bail!("GET {url}: HTTP {}", response.status());
        }
        response.body_mut().read_to_string().with_context(|| format!("GET {url}"))?;
        Ok(())
    }

    /// Sum of a Prometheus counter or gauge over all its label sets, or
    /// `None` when the metrics endpoint cannot be read.
    pub fn metric_sum(&self, name: &str) -> Option<f64> {
        let url = format!("http://{}/metrics", self.control);
        let text = self.agent.get(&url).call().ok()?.body_mut().read_to_string().ok()?;
        Some(sum_metric(&text, name))
    }
}

/// Sums of a Prometheus counter by the value of one of its labels, added
/// into `into`; false when the metrics endpoint at `control` cannot be read.
pub fn add_metric_by_label(
    control: SocketAddr,
    name: &str,
    label: &str,
    into: &mut std::collections::BTreeMap<String, f64>,
) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build().into();
    let url = format!("http://{control}/metrics");
    let Some(text) = agent.get(&url).call().ok().and_then(|mut r| r.body_mut().read_to_string().ok()) else {
        return false;
    };
    for (value, n) in metric_by_label(&text, name, label) {
        *into.entry(value).or_default() += n;
    }
    true
}

fn metric_by_label(text: &str, name: &str, label: &str) -> Vec<(String, f64)> {
    let key = format!("{label}=\"");
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|l| {
            let value = l.split_once(&key)?.1.split('"').next()?.to_string();
            Some((value, l.rsplit(' ').next()?.parse::<f64>().ok()?))
        })
        .collect()
}

fn sum_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_a_metric_over_labels_only() {
        let text = "# TYPE x counter\nx{shard=\"0\"} 3\nx{shard=\"1\"} 4\nx_total 100\nx 1\n";
        assert_eq!(super::sum_metric(text, "x"), 8.0);
    }

    #[test]
    fn splits_a_metric_by_one_label() {
        let text = "x{shard=\"0\",reason=\"inbox_full\"} 3\nx{reason=\"slow_consumer\",shard=\"1\"} 4\nx_total 100\n";
        let by = super::metric_by_label(text, "x", "reason");
        assert_eq!(by, vec![("inbox_full".to_string(), 3.0), ("slow_consumer".to_string(), 4.0)]);
    }
}
