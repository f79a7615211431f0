//! TLS for client connections: the certificate chain and key named in the
//! configuration, served through a rustls configuration (ring crypto, TLS
//! 1.2 and 1.3) from which each shard starts a rustls session for every
//! socket it accepts.
//!
//! The certificate can be replaced without a restart: [`CertStore::reload`]
//! (on SIGHUP or `POST /v1/admin/tls/reload`) reads the files again and, if
//! they hold a valid chain and a matching key, new handshakes use them at
//! once; connections already established keep theirs. A bad file leaves
//! the certificate in force unchanged.
//!
//! The node's HTTP fallback gateway is a client of the node's own TLS
//! listener; [`CertStore::own_client_config`] trusts exactly the
//! certificate this store serves, and nothing else.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The certificate in force, and where it is read from.
#[derive(Debug)]
pub struct CertStore {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

fn load(cert_file: &Path, key_file: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let (certs, key) = corecast_cluster::link::tls::read_chain_and_key(cert_file, key_file)?;
    CertifiedKey::from_der(certs, key, provider).context("the TLS certificate and key do not match or are unsupported")
}

impl CertStore {
    /// Reads the certificate chain and key.
    pub fn open(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<CertStore>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = load(cert_file, key_file, &provider)?;
        Ok(Arc::new(CertStore {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(current)),
        }))
    }

    /// Reads the files again; on success new handshakes use the new
    /// certificate, on failure the old one stays and the error is returned.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = load(&self.cert_file, &self.key_file, &self.provider)?;
        *corecast_proto::sync::write(&self.current) = Arc::new(fresh);
        tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// The rustls configuration that serves this store's certificate.
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Ok(Arc::new(config))
    }
}

impl CertStore {
    /// A client configuration for connecting to this node's own TLS
    /// listener: the server must show the certificate this store serves.
    pub fn own_client_config(self: &Arc<Self>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(OwnCertificate(self.clone())))
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    fn current(&self) -> Arc<CertifiedKey> {
        corecast_proto::sync::read(&self.current).clone()
    }
}

/// Accepts exactly the end-entity certificate the store serves (a path to
/// a CA would prove less: any certificate of that CA would pass), and
/// checks the handshake signatures with it as usual.
#[derive(Debug)]
struct OwnCertificate(Arc<CertStore>);

impl ServerCertVerifier for OwnCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.current().end_entity_cert() {
            Ok(ours) if ours == end_entity => Ok(ServerCertVerified::assertion()),
            _ => Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.provider.signature_verification_algorithms.supported_schemes()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
