//! `tls_config.cert_file` / `key_file`: the client certificate of mutual TLS.
//!
//! Both are PEM files: `cert_file` holds the certificate, optionally followed by intermediates
//! (all are sent, in order); `key_file` holds its private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
//! They may be the same file. Both are set, or neither. Every error names the field and the file.
//!
//! blackbox_exporter builds a new client, reading the files, for every probe, so a rotated
//! certificate is used from the next probe on. watchfire builds an HTTP module's TLS config once,
//! at load; [`FileClientCert`] keeps blackbox's behaviour anyway: at each handshake it compares
//! the two files' modification time and size with those it loaded and reloads them when either
//! changed. A reload that fails (a half-written rotation, a key that does not match) keeps the
//! last good pair, warns once per change, and is retried at the next handshake.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::diag::FieldError;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

/// Checks that `cert_file` and `key_file` come together; `Some((cert, key))` when set.
pub fn pair<'a>(
    cert_file: Option<&'a str>,
    key_file: Option<&'a str>,
) -> Result<Option<(&'a str, &'a str)>, FieldError> {
    let set = |f: Option<&'a str>| f.filter(|s| !s.is_empty());
    match (set(cert_file), set(key_file)) {
        (None, None) => Ok(None),
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (Some(c), None) => Err(FieldError::new(
            "tls_config.key_file",
            format!(
                "missing: cert_file ({c}) is set, and a client certificate needs its private key"
            ),
        )),
        (None, Some(k)) => Err(FieldError::new(
            "tls_config.cert_file",
            format!(
                "missing: key_file ({k}) is set, and a private key needs its client certificate"
            ),
        )),
    }
}

/// The PEM text of `path`, the file of `tls_config.{field}` (size-capped).
pub fn read_pem(field: &str, path: &Path) -> Result<Vec<u8>, FieldError> {
    crate::limits::read_capped(path, crate::limits::MAX_PEM_FILE_BYTES, "file")
        .map_err(|e| FieldError::new(format!("tls_config.{field}"), e.to_string()))
}

fn not_pem(field: &str, path: &Path, e: pem::Error) -> FieldError {
    FieldError::new(
        format!("tls_config.{field}"),
        format!("{} is not valid PEM: {e}", path.display()),
    )
}

/// The certificate chain in `cert_file` (PEM `CERTIFICATE` blocks, leaf first).
pub fn read_chain(cert_file: &Path) -> Result<Vec<CertificateDer<'static>>, FieldError> {
    chain_in(&read_pem("cert_file", cert_file)?, cert_file)
}

/// The certificate chain in `pem`, the text of `cert_file`.
pub fn chain_in(pem: &[u8], cert_file: &Path) -> Result<Vec<CertificateDer<'static>>, FieldError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem("cert_file", cert_file, e))?;
    if chain.is_empty() {
        let hint = if PrivateKeyDer::from_pem_slice(pem).is_ok() {
            " (it holds a private key: are cert_file and key_file swapped?)"
        } else {
            ""
        };
        return Err(FieldError::new(
            "tls_config.cert_file",
            format!(
                "{} holds no certificate (no CERTIFICATE block){hint}",
                cert_file.display()
            ),
        ));
    }
    Ok(chain)
}

/// The private key in `key_file` (the first `PRIVATE KEY`, `RSA PRIVATE KEY` or
/// `EC PRIVATE KEY` block).
pub fn read_key(key_file: &Path) -> Result<PrivateKeyDer<'static>, FieldError> {
    key_in(&read_pem("key_file", key_file)?, key_file)
}

/// The private key in `pem`, the text of `key_file`.
pub fn key_in(pem: &[u8], key_file: &Path) -> Result<PrivateKeyDer<'static>, FieldError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => FieldError::new(
            "tls_config.key_file",
            format!(
                "{} holds no private key (no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)",
                key_file.display()
            ),
        ),
        e => not_pem("key_file", key_file, e),
    })
}

/// Loads and checks the pair: the key must be usable by `provider` and belong to the first
/// certificate.
pub fn load(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, FieldError> {
    let chain = read_chain(cert_file)?;
    let key = read_key(key_file)?;
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        FieldError::new(
            "tls_config.key_file",
            format!("the key in {} cannot be used: {e}", key_file.display()),
        )
    })?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(ck),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(FieldError::new(
                "tls_config.key_file",
                format!(
                    "the key in {} does not belong to the certificate in {}",
                    key_file.display(),
                    cert_file.display()
                ),
            ))
        }
        Err(e) => Err(FieldError::new(
            "tls_config.cert_file",
            format!(
                "the certificate in {} cannot be used: {e}",
                cert_file.display()
            ),
        )),
    }
}

/// What identifies a version of the two files: modification time and size of each.
type Stamp = [(SystemTime, u64); 2];

fn stamp(cert_file: &Path, key_file: &Path) -> Option<Stamp> {
    let one = |p: &Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    Some([one(cert_file)?, one(key_file)?])
}

#[derive(Debug)]
struct Loaded {
    /// The files' stamp when `key` was loaded.
    stamp: Option<Stamp>,
    key: Arc<CertifiedKey>,
    /// The stamp of the last reload that failed (warned about once).
    failed: Option<Option<Stamp>>,
}

/// A client certificate from files, reloaded when they change (see the module doc).
#[derive(Debug)]
pub struct FileClientCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    loaded: Mutex<Loaded>,
}

impl FileClientCert {
    /// Loads the pair now: an error names the field and the file.
    pub fn new(
        cert_file: PathBuf,
        key_file: PathBuf,
        provider: Arc<CryptoProvider>,
    ) -> Result<FileClientCert, FieldError> {
        let stamp = stamp(&cert_file, &key_file);
        let key = Arc::new(load(&cert_file, &key_file, &provider)?);
        Ok(FileClientCert {
            cert_file,
            key_file,
            provider,
            loaded: Mutex::new(Loaded {
                stamp,
                key,
                failed: None,
            }),
        })
    }

    /// The pair to present: reloaded first when the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let now = stamp(&self.cert_file, &self.key_file);
        let mut l = self
            .loaded
            .lock()
            .expect("client certificate lock poisoned");
        if now.is_some() && now == l.stamp {
            return l.key.clone();
        }
        match load(&self.cert_file, &self.key_file, &self.provider) {
            Ok(k) => {
                tracing::info!(cert_file = %self.cert_file.display(), "client certificate reloaded");
                l.key = Arc::new(k);
                l.stamp = now;
                l.failed = None;
            }
            Err(e) => {
                if l.failed != Some(now) {
                    tracing::warn!(error = %e, "cannot reload the client certificate; presenting the one loaded before");
                    l.failed = Some(now);
                }
            }
        }
        l.key.clone()
    }
}

impl ResolvesClientCert for FileClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            Files {
                dir: tempfile::tempdir().expect("tempdir"),
            }
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.dir.path().join(name);
            std::fs::write(&p, text).expect("write");
            p
        }
    }

    fn generated() -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(vec!["client.test".into()]).expect("cert");
        (ck.cert.pem(), ck.signing_key.serialize_pem())
    }

    #[test]
    fn cert_and_key_come_together() {
        assert_eq!(pair(None, None), Ok(None));
        assert_eq!(pair(Some(""), None), Ok(None));
        assert_eq!(pair(Some("c"), Some("k")), Ok(Some(("c", "k"))));
        let e = pair(Some("c.pem"), None).unwrap_err();
        assert!(
            e.field == "tls_config.key_file"
                && e.message.starts_with("missing")
                && e.message.contains("c.pem"),
            "{e}"
        );
        let e = pair(None, Some("k.pem")).unwrap_err();
        assert!(
            e.field == "tls_config.cert_file"
                && e.message.starts_with("missing")
                && e.message.contains("k.pem"),
            "{e}"
        );
    }

    #[test]
    fn a_good_pair_loads_and_a_combined_file_works_too() {
        let f = Files::new();
        let (cert, key) = generated();
        let c = f.write("c.pem", &cert);
        let k = f.write("k.pem", &key);
        let ck = load(&c, &k, &provider()).expect("loads");
        assert_eq!(ck.cert.len(), 1);
        let both = f.write("both.pem", &format!("{cert}{key}"));
        load(&both, &both, &provider()).expect("one file holding both");
    }

    #[test]
    fn errors_name_the_field_and_the_file() {
        let f = Files::new();
        let (cert, key) = generated();
        let (_, other_key) = generated();
        let c = f.write("c.pem", &cert);
        let k = f.write("k.pem", &key);
        let missing = f.dir.path().join("missing.pem");
        let garbage = f.write("garbage.pem", "-----BEGIN CERTIFICATE-----\n!!!\n");
        let empty = f.write("empty.pem", "nothing here\n");
        let other = f.write("other.pem", &other_key);
        let cases = [
            (&missing, &k, "tls_config.cert_file", "cannot read"),
            (&c, &missing, "tls_config.key_file", "cannot read"),
            (&garbage, &k, "tls_config.cert_file", "garbage.pem"),
            (&empty, &k, "tls_config.cert_file", "no certificate"),
            (&c, &empty, "tls_config.key_file", "no private key"),
            (&k, &c, "tls_config.cert_file", "swapped"),
            (&c, &other, "tls_config.key_file", "does not belong"),
        ];
        for (cert_file, key_file, field, has) in cases {
            let e = load(cert_file, key_file, &provider()).unwrap_err();
            assert!(e.field == field && e.message.contains(has), "{e}");
        }
        let e = load(&garbage, &k, &provider()).unwrap_err();
        assert!(e.message.contains("not valid PEM"), "{e}");
    }

    #[test]
    fn a_rotated_pair_is_picked_up_and_a_broken_one_keeps_the_last_good() {
        let f = Files::new();
        let (cert, key) = generated();
        let c = f.write("c.pem", &cert);
        let k = f.write("k.pem", &key);
        let r = FileClientCert::new(c.clone(), k.clone(), provider()).expect("loads");
        let first = r.current();
        assert!(
            Arc::ptr_eq(&first, &r.current()),
            "unchanged files: no reload"
        );
        let (cert2, key2) = generated();
        // Half a rotation: the new certificate, the old key (the sizes may match, the
        // certificate always differs; mtimes may be equal on coarse clocks, so also change
        // the length).
        std::fs::write(&c, format!("{cert2}\n")).expect("rotate cert");
        let during = r.current();
        assert_eq!(during.cert, first.cert, "a mismatched pair is not used");
        std::fs::write(&k, format!("{key2}\n")).expect("rotate key");
        let after = r.current();
        assert_ne!(after.cert, first.cert, "the rotated pair is used");
        assert!(r.resolve(&[], &[]).is_some() && r.has_certs());
    }
}
