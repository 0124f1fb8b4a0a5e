//! TLS for the node: the orchestrator's certificate (created self-signed on first start, or
//! given), its SHA-256 fingerprint, and client configs that verify the orchestrator by pinning
//! that fingerprint or by a CA file. ALPN is `h2` only.
//!
//! Mutual TLS for transcoders: the server asks every client for a certificate but does not
//! require one (broadcasters and scrapers send none). A presented certificate must prove its key
//! in the handshake; *who* it is, is decided by the node: the SHA-256 of the leaf must be the one
//! pinned for the transcoder id (`--transcoder-certs`), so revoking it is editing a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use sha2::{Digest, Sha256};

/// Errors of certificate handling.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: no {what} found in the PEM file")]
    Missing { path: PathBuf, what: &'static str },
    #[error("creating a self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("fingerprint {0:?} is not 64 hex digits (SHA-256), colons allowed")]
    BadFingerprint(String),
    #[error("{path}: not PEM ({why})")]
    Pem { path: PathBuf, why: String },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A certificate chain and its key.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// SHA-256 of the leaf certificate, lowercase hex: what transcoders pin.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.chain[0])
    }
}

impl Clone for Identity {
    fn clone(&self) -> Identity {
        Identity { chain: self.chain.clone(), key: self.key.clone_key() }
    }
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io { path: path.to_owned(), source })
}

/// Loads a PEM certificate chain and key.
pub fn load_identity(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
    let chain = certificates(cert)?;
    if chain.is_empty() {
        return Err(TlsError::Missing { path: cert.to_owned(), what: "certificate" });
    }
    let key_der = match PrivateKeyDer::from_pem_slice(&read(key)?) {
        Ok(k) => k,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsError::Missing { path: key.to_owned(), what: "private key" });
        }
        Err(e) => return Err(TlsError::Pem { path: key.to_owned(), why: e.to_string() }),
    };
    Ok(Identity { chain, key: key_der })
}

/// Every certificate in a PEM file (`rustls-pki-types`' PEM reader).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_owned(), why: e.to_string() })
}

/// The identity in `dir` (`cert.pem`, `key.pem`), created self-signed for `names` when absent.
/// Returns whether it was created.
pub fn self_signed_in(dir: &Path, names: &[String]) -> Result<(Identity, bool), TlsError> {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert_path.exists() && key_path.exists() {
        return Ok((load_identity(&cert_path, &key_path)?, false));
    }
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io { path: dir.to_owned(), source })?;
    let ck = rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| TlsError::Generate(e.to_string()))?;
    // The private key is readable by its owner only (0600), from its creation on: never written
    // first and narrowed after.
    let write = |p: &Path, s: String, mode: u32| {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(p)
            .and_then(|mut f| f.write_all(s.as_bytes()))
            .map_err(|source| TlsError::Io { path: p.to_owned(), source })
    };
    write(&key_path, ck.signing_key.serialize_pem(), 0o600)?;
    write(&cert_path, ck.cert.pem(), 0o644)?;
    Ok((load_identity(&cert_path, &key_path)?, true))
}

/// An in-memory self-signed identity for `names` (tests, the demo).
pub fn self_signed(names: &[String]) -> Result<Identity, TlsError> {
    let ck = rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(Identity {
        chain: vec![ck.cert.der().clone()],
        key: PrivateKeyDer::try_from(ck.signing_key.serialize_der()).map_err(|e| TlsError::Generate(e.to_string()))?,
    })
}

/// Server config: the identity, TLS 1.2/1.3, ALPN `h2` and `http/1.1` (a client that offers no
/// ALPN gets HTTP/1.1); client certificates asked for but optional (see the module
/// documentation).
pub fn server_config(identity: Identity) -> Result<Arc<ServerConfig>, TlsError> {
    let mut c = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(OptionalClientCert { provider: provider() }))
        .with_single_cert(identity.chain, identity.key)?;
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // No TLS 1.3 session tickets: a client that only writes (ffmpeg's HLS muxer PUTs a segment
    // and hangs up without reading) leaves them unread, so its close becomes a reset that can
    // discard the end of its upload here before it is read.
    c.send_tls13_tickets = 0;
    Ok(Arc::new(c))
}

/// How a client decides to trust the orchestrator.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The leaf certificate's SHA-256 must equal this (hex), or one of several separated by
    /// commas (a rotation: the old and the new certificate both accepted).
    Pin(String),
    /// A chain to one of these CA certificates (PEM file), for the name dialled.
    CaFile(PathBuf),
    /// Any certificate (the handshake signature still checked): go-livepeer's own clients do
    /// this, as its orchestrator makes a new self-signed certificate at every start. Only for a
    /// link to a Livepeer orchestrator, and only when the operator asks (`--livepeer-insecure`).
    AnyCertificate,
}

/// Normalises a fingerprint: lowercase, colons removed, 64 hex digits.
pub fn parse_fingerprint(s: &str) -> Result<String, TlsError> {
    let f: String = s.trim().chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    if f.len() == 64 && f.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(f)
    } else {
        Err(TlsError::BadFingerprint(s.into()))
    }
}

/// Normalises one or more fingerprints separated by commas (an empty piece is refused).
pub fn parse_fingerprints(s: &str) -> Result<Vec<String>, TlsError> {
    s.split(',').map(parse_fingerprint).collect()
}

/// Client config for `trust`, ALPN `h2`.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_with(trust, None)
}

/// Client config for `trust`, presenting `identity` when the server asks (mutual TLS).
pub fn client_config_with(trust: &Trust, identity: Option<&Identity>) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match trust {
        Trust::Pin(fps) => builder.dangerous().with_custom_certificate_verifier(Arc::new(PinnedVerifier {
            fingerprints: parse_fingerprints(fps)?,
            provider: provider(),
        })),
        Trust::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path)? {
                roots.add(cert)?;
            }
            builder.with_root_certificates(roots)
        }
        Trust::AnyCertificate => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate { provider: provider() }))
        }
    };
    let mut c = match identity {
        Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    c.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(c))
}

/// The handshake-signature half of a verifier, as rustls's own verifiers do it: checked with the
/// crypto provider's algorithms (`self.provider`). The verifiers below differ only in which
/// certificate they accept.
macro_rules! handshake_signatures_by_the_provider {
    () => {
        handshake_signatures_by_the_provider!(
            verify_tls12_signature => rustls::crypto::verify_tls12_signature,
            verify_tls13_signature => rustls::crypto::verify_tls13_signature
        );

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider.signature_verification_algorithms.supported_schemes()
        }
    };
    ($($method:ident => $verify:path),+) => {
        $(
            fn $method(
                &self,
                message: &[u8],
                cert: &CertificateDer<'_>,
                dss: &DigitallySignedStruct,
            ) -> Result<HandshakeSignatureValid, rustls::Error> {
                $verify(message, cert, dss, &self.provider.signature_verification_algorithms)
            }
        )+
    };
}

/// Accepts exactly the certificate whose SHA-256 was pinned (whatever its name or issuer), and
/// checks the handshake signature with it as usual.
#[derive(Debug)]
struct PinnedVerifier {
    fingerprints: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint(end_entity);
        // Fingerprints are public; a plain comparison leaks nothing secret.
        if self.fingerprints.contains(&got) {
            Ok(ServerCertVerified::assertion())
        } else {
            let expected = self.fingerprints.join(",");
            tracing::error!(%expected, presented = %got, "orchestrator certificate does not match the pinned fingerprint");
            Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
        }
    }

    handshake_signatures_by_the_provider!();
}

/// Accepts whatever certificate the server presents, and checks the handshake signature with it
/// (so the session is at least with the holder of that certificate's key): [`Trust::AnyCertificate`].
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures_by_the_provider!();
}

/// Asks for a client certificate without requiring one, and checks that a presented one signed
/// the handshake. Which transcoder it belongs to (if any) is the node's decision, by pinned
/// fingerprint: no CA is involved, so any certificate passes here.
#[derive(Debug)]
struct OptionalClientCert {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for OptionalClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures_by_the_provider!();
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_created_private_key_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("zerohop-keymode-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let (_, created) = super::self_signed_in(&dir, &["localhost".into()]).expect("identity");
        assert!(created);
        let mode = |f: &str| std::fs::metadata(dir.join(f)).expect(f).permissions().mode() & 0o777;
        assert_eq!(mode("key.pem"), 0o600, "the private key");
        assert_ne!(mode("cert.pem") & 0o400, 0, "the certificate is readable");
        std::fs::remove_dir_all(&dir).ok();
    }
}
