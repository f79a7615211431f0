//! The addresses a node publishes for dispatch: where TCP clients connect
//! and the WebSocket URL browsers connect to, each configured or derived
//! from the listeners.

use std::net::SocketAddr;

use crate::config::Config;

/// Where clients are told to connect to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    /// `host:port` of the client listener.
    pub client: String,
    /// `ws://host:port/path`, or `wss://…` when the node speaks TLS.
    pub ws_url: String,
}

impl Advertised {
    /// The configured addresses, or: the client listener's address, and a
    /// WebSocket URL on the same host as that (advertised) address.
    pub fn new(config: &Config, listen: SocketAddr, ws_listen: SocketAddr) -> Advertised {
        let client = config.advertise_addr.clone().unwrap_or_else(|| listen.to_string());
        let ws_url = config.advertise_ws_url.clone().unwrap_or_else(|| {
            // `rsplit` keeps an IPv6 host's brackets and colons together.
            let host = client.rsplit_once(':').map_or(client.as_str(), |(host, _port)| host);
            let scheme = if config.tls_cert_file.is_some() { "wss" } else { "ws" };
            format!("{scheme}://{host}:{}{}", ws_listen.port(), config.ws_path)
        });
        Advertised { client, ws_url }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn derived_from_the_listeners() {
        let config = Config::default();
        let got = Advertised::new(&config, addr("10.0.0.5:7100"), addr("0.0.0.0:7101"));
        assert_eq!(got.client, "10.0.0.5:7100");
        assert_eq!(got.ws_url, "ws://10.0.0.5:7101/ws");
    }

    #[test]
    fn the_advertised_host_carries_over_to_websocket_and_tls_makes_it_wss() {
        let config = Config {
            advertise_addr: Some("edge-1.example.com:443".into()),
            tls_cert_file: Some("cert.pem".into()),
            ws_path: "/live".into(),
            ..Config::default()
        };
        let got = Advertised::new(&config, addr("0.0.0.0:7100"), addr("0.0.0.0:8443"));
        assert_eq!(got.ws_url, "wss://edge-1.example.com:8443/live");
        let v6 = Config { advertise_addr: Some("[2001:db8::1]:7100".into()), ..Config::default() };
        assert_eq!(Advertised::new(&v6, addr("[::]:7100"), addr("[::]:7101")).ws_url, "ws://[2001:db8::1]:7101/ws");
    }

    #[test]
    fn a_configured_url_wins() {
        let config = Config { advertise_ws_url: Some("wss://rooms.example.com/ws".into()), ..Config::default() };
        assert_eq!(
            Advertised::new(&config, addr("127.0.0.1:1"), addr("127.0.0.1:2")).ws_url,
            "wss://rooms.example.com/ws"
        );
    }
}
