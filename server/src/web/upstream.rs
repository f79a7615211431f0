//! The fallback gateway's connection to the node's own client listener:
//! plain TCP, or TLS on a TLS node (trusting exactly the node's own
//! certificate, see [`crate::tls::CertStore::own_client_config`]).

use std::io;
use std::net::SocketAddr;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The reading half of an upstream connection.
pub type UpstreamReader = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of an upstream connection.
pub type UpstreamWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// Connects to `addr`, over TLS when a connector is given.
pub async fn connect(addr: SocketAddr, tls: Option<&TlsConnector>) -> io::Result<(UpstreamReader, UpstreamWriter)> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    match tls {
        None => {
            let (reader, writer) = tcp.into_split();
            Ok((Box::new(reader), Box::new(writer)))
        }
        Some(connector) => {
            let stream = connector.connect(ServerName::IpAddress(addr.ip().into()), tcp).await?;
            let (reader, writer) = tokio::io::split(stream);
            Ok((Box::new(reader), Box::new(writer)))
        }
    }
}

/// Writes `bytes` and flushes them: a TLS writer holds what it is given
/// until flushed, so every write to the node goes through here.
pub async fn send(writer: &mut UpstreamWriter, bytes: &[u8]) -> io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}
