//! The addresses a node publishes for dispatch: where TCP clients connect
//! and the WebSocket URL browsers connect to, each configured or derived
//! from the listeners. A listener on a wildcard address (0.0.0.0, ::) is
//! published as the host's primary address ([`reachable`]), never as the
//! wildcard, which no client can connect to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

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
        let client = config.advertise_addr.clone().unwrap_or_else(|| reachable(listen).to_string());
        let ws_url = config.advertise_ws_url.clone().unwrap_or_else(|| {
            // `rsplit` keeps an IPv6 host's brackets and colons together.
            let host = client.rsplit_once(':').map_or(client.as_str(), |(host, _port)| host);
            let scheme = if config.tls_cert_file.is_some() { "wss" } else { "ws" };
            format!("{scheme}://{host}:{}{}", ws_listen.port(), config.ws_path)
        });
        Advertised { client, ws_url }
    }
}

/// `addr`, or, when its IP is a wildcard (0.0.0.0, ::), the same port on
/// an address other hosts can connect to: the host's primary address, the
/// source address the kernel picks for a route to the Internet (found by
/// connecting a UDP socket to a documentation address; nothing is sent),
/// or loopback when the host has no such route.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    if !addr.ip().is_unspecified() {
        return addr;
    }
    let (probe, loopback): (IpAddr, IpAddr) = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::new(192, 0, 2, 1).into(), Ipv4Addr::LOCALHOST.into()),
        SocketAddr::V6(_) => (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(), Ipv6Addr::LOCALHOST.into()),
    };
    let primary = UdpSocket::bind(SocketAddr::new(addr.ip(), 0))
        .and_then(|socket| {
            socket.connect(SocketAddr::new(probe, 9))?;
            socket.local_addr()
        })
        .map(|local| local.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified());
    SocketAddr::new(primary.unwrap_or(loopback), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listener_is_published_as_an_address_that_reaches_it() {
        let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let published = reachable(listener.local_addr().unwrap());
        assert!(!published.ip().is_unspecified(), "{published}");
        assert_eq!(published.port(), listener.local_addr().unwrap().port());
        std::net::TcpStream::connect(published).expect("a client reaches the published address");
        assert_eq!(reachable(addr("10.0.0.5:7100")), addr("10.0.0.5:7100"));
        let got = Advertised::new(&Config::default(), listener.local_addr().unwrap(), addr("0.0.0.0:7101"));
        assert_eq!(got.client, published.to_string());
        assert_eq!(got.ws_url, format!("ws://{}:7101/ws", published.ip()));
    }

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
