//! `tls_server_config` → a rustls server configuration: the certificate and key, the client
//! certificate policy, versions, cipher suites and key-exchange groups, under Go's names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme, SupportedCipherSuite};
use serde_saphyr::Spanned;

use super::schema::RawTls;

/// A problem in `tls_server_config`: the field under it, its line, what is wrong.
#[derive(Debug)]
pub(super) struct TlsError {
    pub field: String,
    pub line: u64,
    pub message: String,
}

fn err<T>(field: &str, at: Option<&Spanned<T>>, message: impl Into<String>) -> TlsError {
    TlsError {
        field: field.to_string(),
        line: at.map_or(0, |s| s.referenced.line()),
        message: message.into(),
    }
}

/// Go's `tls.ClientAuthType`, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    const NAMES: &'static str = "NoClientCert, RequestClientCert, RequireAnyClientCert, \
                                 VerifyClientCertIfGiven, RequireAndVerifyClientCert";

    fn parse(s: &str) -> Option<ClientAuth> {
        Some(match s {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            "RequireAnyClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

/// PEM from `inline` or from the file `file` (relative to `dir`; the file is watched).
fn pem(
    file: &Option<Spanned<String>>,
    inline: &Option<Spanned<String>>,
    names: (&str, &str),
    dir: &Path,
    watched: &mut Vec<PathBuf>,
) -> Result<Option<Vec<u8>>, TlsError> {
    match (file, inline) {
        (Some(f), Some(_)) => Err(err(
            names.0,
            Some(f),
            format!("set either {} or {}, not both", names.0, names.1),
        )),
        (Some(f), None) if !f.value.is_empty() => {
            let path = dir.join(&f.value);
            let bytes = super::read_named(&path).map_err(|m| err(names.0, Some(f), m))?;
            watched.push(path);
            Ok(Some(bytes))
        }
        (None, Some(i)) if !i.value.is_empty() => Ok(Some(i.value.clone().into_bytes())),
        _ => Ok(None),
    }
}

/// The rustls configuration `t` describes; `None` when it names no certificate at all (as
/// exporter-toolkit, which then serves plain HTTP).
pub(super) fn build(
    t: &RawTls,
    dir: &Path,
    watched: &mut Vec<PathBuf>,
) -> Result<Option<rustls::ServerConfig>, TlsError> {
    if let Some(s) = &t.client_allowed_sans {
        return Err(err(
            "client_allowed_sans",
            Some(s),
            "not supported by watchfire; use client_ca_file to decide which clients are trusted",
        ));
    }
    let cert = pem(&t.cert_file, &t.cert, ("cert_file", "cert"), dir, watched)?;
    let key = pem(&t.key_file, &t.key, ("key_file", "key"), dir, watched)?;
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(err::<()>("key_file", None, "missing key_file")),
        (None, Some(_)) => return Err(err::<()>("cert_file", None, "missing cert_file")),
        (Some(c), Some(k)) => (c, k),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<_, _>>()
        .map_err(|e| err("cert_file", t.cert_file.as_ref(), format!("not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(err(
            "cert_file",
            t.cert_file.as_ref(),
            "holds no CERTIFICATE block",
        ));
    }
    // The key's own error is not shown: it could quote key material.
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|_| {
        err(
            "key_file",
            t.key_file.as_ref(),
            "holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1)",
        )
    })?;

    let provider = Arc::new(provider(t)?);
    let versions = versions(t)?;
    let verifier = client_verifier(t, dir, watched, &provider)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| err("cipher_suites", t.cipher_suites.as_ref(), e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            err(
                "key_file",
                t.key_file.as_ref(),
                format!("the key does not fit the certificate or cannot be used: {e}"),
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(cfg))
}

/// The ring provider narrowed to the configured cipher suites and groups.
fn provider(t: &RawTls) -> Result<CryptoProvider, TlsError> {
    let mut p = rustls::crypto::ring::default_provider();
    if let Some(names) = &t.cipher_suites {
        let all = p.cipher_suites.clone();
        // TLS 1.3 suites are not configurable in Go either: they stay.
        let mut chosen: Vec<SupportedCipherSuite> = all
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
            .copied()
            .collect();
        for name in &names.value {
            let go = name.trim_end_matches("_SHA256");
            let found = all.iter().find(|s| {
                let ours = s.suite().as_str().unwrap_or("");
                matches!(s, SupportedCipherSuite::Tls12(_))
                    && (ours == name || ours.trim_end_matches("_SHA256") == go)
            });
            match found {
                Some(s) => chosen.push(*s),
                None => {
                    return Err(err(
                        "cipher_suites",
                        Some(names),
                        format!(
                            "unknown or unsupported cipher suite `{name}` (supported: {})",
                            tls12_names(&all).join(", ")
                        ),
                    ))
                }
            }
        }
        p.cipher_suites = chosen;
    }
    if let Some(names) = &t.curve_preferences {
        let all = p.kx_groups.clone();
        let mut chosen: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for name in &names.value {
            let want = match name.as_str() {
                "X25519" => rustls::NamedGroup::X25519,
                "CurveP256" => rustls::NamedGroup::secp256r1,
                "CurveP384" => rustls::NamedGroup::secp384r1,
                _ => {
                    return Err(err(
                        "curve_preferences",
                        Some(names),
                        format!(
                            "unknown or unsupported curve `{name}` (supported: X25519, CurveP256, CurveP384)"
                        ),
                    ))
                }
            };
            chosen.extend(all.iter().filter(|g| g.name() == want).copied());
        }
        p.kx_groups = chosen;
    }
    Ok(p)
}

fn tls12_names(all: &[SupportedCipherSuite]) -> Vec<&'static str> {
    all.iter()
        .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
        .filter_map(|s| s.suite().as_str())
        .collect()
}

/// `min_version` .. `max_version` (TLS12 by default .. TLS13).
fn versions(t: &RawTls) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
    let parse = |v: &Option<Spanned<String>>, field: &str, default: u8| match v {
        None => Ok(default),
        Some(s) => match s.value.as_str() {
            "TLS12" => Ok(12),
            "TLS13" => Ok(13),
            "TLS10" | "TLS11" => Err(err(
                field,
                Some(s),
                format!(
                    "{} is not supported (rustls speaks TLS12 and TLS13)",
                    s.value
                ),
            )),
            other => Err(err(
                field,
                Some(s),
                format!("unknown TLS version `{other}` (TLS12 or TLS13)"),
            )),
        },
    };
    let min = parse(&t.min_version, "min_version", 12)?;
    let max = parse(&t.max_version, "max_version", 13)?;
    if min > max {
        return Err(err(
            "min_version",
            t.min_version.as_ref(),
            "is above max_version",
        ));
    }
    let mut out = Vec::new();
    if min <= 12 {
        out.push(&rustls::version::TLS12);
    }
    if max >= 13 {
        out.push(&rustls::version::TLS13);
    }
    Ok(out)
}

/// The client-certificate policy of `client_auth_type` with `client_ca_file`.
fn client_verifier(
    t: &RawTls,
    dir: &Path,
    watched: &mut Vec<PathBuf>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let name = t.client_auth_type.as_ref();
    let auth = ClientAuth::parse(name.map_or("", |s| s.value.as_str())).ok_or_else(|| {
        err(
            "client_auth_type",
            name,
            format!(
                "unknown client_auth_type `{}` (one of {})",
                name.map_or("", |s| s.value.as_str()),
                ClientAuth::NAMES
            ),
        )
    })?;
    let ca = pem(
        &t.client_ca_file,
        &t.client_ca,
        ("client_ca_file", "client_ca"),
        dir,
        watched,
    )?;
    match (auth, ca) {
        (ClientAuth::NoClientCert, None) => Ok(WebPkiClientVerifier::no_client_auth()),
        (ClientAuth::NoClientCert, Some(_)) => Err(err(
            "client_ca_file",
            t.client_ca_file.as_ref(),
            "client CAs are set but client_auth_type is NoClientCert",
        )),
        (a, _) if !a.verifies() => Ok(Arc::new(AnyClientCert {
            mandatory: a == ClientAuth::RequireAnyClientCert,
            provider: provider.clone(),
        })),
        (a, None) => Err(err(
            "client_ca_file",
            name,
            format!("client_auth_type {a:?} needs client_ca_file"),
        )),
        (a, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&ca) {
                let c = c.map_err(|e| {
                    err(
                        "client_ca_file",
                        t.client_ca_file.as_ref(),
                        format!("not PEM: {e}"),
                    )
                })?;
                roots
                    .add(c)
                    .map_err(|e| err("client_ca_file", t.client_ca_file.as_ref(), e.to_string()))?;
            }
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let b = if a == ClientAuth::VerifyClientCertIfGiven {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build()
                .map_err(|e| err("client_ca_file", t.client_ca_file.as_ref(), e.to_string()))
        }
    }
}

/// `RequestClientCert` and `RequireAnyClientCert`: a certificate is asked for (required with
/// the latter) and not verified, as Go does; its signature over the handshake still is.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
