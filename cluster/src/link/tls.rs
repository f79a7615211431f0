//! TLS on the links, for clusters whose nodes and routers talk across a
//! network nobody should read: a router with `link_tls_cert_file` and
//! `link_tls_key_file` accepts only TLS links; a node with
//! `link_tls_ca_file` opens its links over TLS and accepts a router only
//! if its certificate chains to that CA and names the host of the router's
//! registered link address. The cluster key is still checked inside.
//!
//! Both ends see a link as a boxed reader and writer, plain or TLS alike.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Longest a link's TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The reading half of a link.
pub type LinkReader = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a link.
pub type LinkWriter = Box<dyn AsyncWrite + Send + Unpin>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain and its PEM private key (also used for
/// the server's client-facing TLS).
pub fn read_chain_and_key(
    cert_file: &Path,
    key_file: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("reading certificates from {}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificates in {}", cert_file.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", cert_file.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading the private key from {}", key_file.display()))?;
    Ok((certs, key))
}

/// The router's side: serves `cert_file` (PEM chain) with `key_file`.
pub fn acceptor(cert_file: &Path, key_file: &Path) -> anyhow::Result<TlsAcceptor> {
    let (certs, key) = read_chain_and_key(cert_file, key_file)?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the link certificate and key do not match or are unsupported")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The node's side: trusts routers whose certificates chain to a CA in
/// `ca_file` (PEM).
pub fn connector(ca_file: &Path) -> anyhow::Result<TlsConnector> {
    Ok(TlsConnector::from(Arc::new(client_config(Some(ca_file))?)))
}

/// A client configuration trusting the CA certificates in `ca_file` (PEM),
/// or nothing at all without one (every handshake then fails).
pub fn client_config(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca_file) = ca_file {
        for cert in CertificateDer::pem_file_iter(ca_file).with_context(|| format!("reading {}", ca_file.display()))? {
            let cert = cert.with_context(|| format!("parsing certificates in {}", ca_file.display()))?;
            roots.add(cert).with_context(|| format!("a CA certificate in {} is not usable", ca_file.display()))?;
        }
        if roots.is_empty() {
            anyhow::bail!("no CA certificate in {}", ca_file.display());
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Splits a plain TCP link.
pub fn plain(stream: TcpStream) -> (LinkReader, LinkWriter) {
    let (reader, writer) = stream.into_split();
    (Box::new(reader), Box::new(writer))
}

/// Finishes the router's side of a TLS handshake on `stream`.
pub async fn accept(acceptor: &TlsAcceptor, stream: TcpStream) -> std::io::Result<(LinkReader, LinkWriter)> {
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let (reader, writer) = tokio::io::split(tls);
    Ok((Box::new(reader), Box::new(writer)))
}

/// Opens the node's side of a TLS link to `link_addr` (`host:port`) over
/// `stream`, checking the router's certificate names `host`.
pub async fn connect(
    connector: &TlsConnector,
    link_addr: &str,
    stream: TcpStream,
) -> std::io::Result<(LinkReader, LinkWriter)> {
    let host = link_addr.rsplit_once(':').map_or(link_addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{link_addr}: {e}")))?;
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let (reader, writer) = tokio::io::split(tls);
    Ok((Box::new(reader), Box::new(writer)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn key(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/tests/keys").join(name)
    }

    #[tokio::test]
    async fn a_node_trusting_the_ca_links_and_one_trusting_another_does_not() {
        let acceptor = acceptor(&key("tls_cert.pem"), &key("tls_key.pem")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let mut results = Vec::new();
            for _ in 0..2 {
                let (stream, _) = listener.accept().await.unwrap();
                results.push(match accept(&acceptor, stream).await {
                    Ok((mut reader, _writer)) => {
                        let mut hello = [0u8; 5];
                        reader.read_exact(&mut hello).await.map(|_| hello.to_vec()).map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                });
            }
            results
        });

        let trusting = connector(&key("tls_ca.pem")).unwrap();
        let (_reader, mut writer) = connect(&trusting, &addr, TcpStream::connect(&addr).await.unwrap()).await.unwrap();
        writer.write_all(b"hello").await.unwrap();
        writer.flush().await.unwrap();

        let other = connector(&key("tls_ca_2.pem")).unwrap();
        let refused = connect(&other, &addr, TcpStream::connect(&addr).await.unwrap()).await;
        assert!(refused.is_err(), "a certificate from an untrusted CA must be refused");

        let results = server.await.unwrap();
        assert_eq!(results[0], Ok(b"hello".to_vec()));
        assert!(results[1].is_err());
    }

    #[test]
    fn missing_or_empty_files_are_named_in_the_error() {
        let error = connector(Path::new("/nonexistent/ca.pem")).err().unwrap();
        assert!(format!("{error:#}").contains("/nonexistent/ca.pem"), "{error:#}");
        let error = acceptor(&key("tls_ca.pem"), &key("missing_key.pem")).err().unwrap();
        assert!(format!("{error:#}").contains("missing_key.pem"), "{error:#}");
    }
}
