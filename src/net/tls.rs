//! rustls client configurations for `https://` probes: system roots, a custom CA file, or no
//! verification at all (`insecure_skip_verify`).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crate::diag::FieldError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// TLS options of a target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Accept any certificate.
    pub insecure_skip_verify: bool,
    /// Trust these CAs (PEM file) instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Verify against this name (and send it as SNI) instead of the URL's host.
    pub server_name: Option<String>,
}

/// The system's trusted roots, loaded once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "cannot load some system CA certificates");
            }
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "loaded system CA certificates");
            Arc::new(store)
        })
        .clone()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the client config for a target's TLS options.
/// A problem names its field relative to the TLS options: `ca_file`, or none for the setup as a
/// whole.
pub fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>, FieldError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| FieldError::new("", format!("TLS setup: {e}")))?;
    let mut cfg = if opts.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth()
    } else if let Some(ca) = &opts.ca_file {
        let mut store = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| ca_problem(format!("cannot read CA file {}: {e}", ca.display())))?;
        for c in certs {
            let c =
                c.map_err(|e| ca_problem(format!("bad certificate in {}: {e}", ca.display())))?;
            store.add(c).map_err(|e| {
                ca_problem(format!("unusable certificate in {}: {e}", ca.display()))
            })?;
        }
        if store.is_empty() {
            return Err(ca_problem(format!(
                "no certificate found in {}",
                ca.display()
            )));
        }
        builder.with_root_certificates(store).with_no_client_auth()
    } else {
        builder
            .with_root_certificates(system_roots())
            .with_no_client_auth()
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn ca_problem(message: String) -> FieldError {
    FieldError::new("ca_file", message)
}

/// The name to verify and send as SNI — every prober's one rule: the configured
/// `server_name` when it is set and not empty, else the host connected to (an IPv6 literal
/// without its brackets).
pub fn server_name(configured: Option<&str>, host: &str) -> Result<ServerName<'static>, String> {
    let name = configured.filter(|s| !s.is_empty()).unwrap_or(host);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(name.to_string())
        .map_err(|e| format!("`{name}` is not a TLS server name: {e}"))
}

/// Accepts any certificate but still checks the handshake signatures.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
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

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
