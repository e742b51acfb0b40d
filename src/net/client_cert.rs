//! Our client certificate for mutual TLS (`client_cert_file`, `client_key_file`): read through
//! the one file reader, read again when the files change, presented to a server that asks.
//!
//! cert-manager renews a certificate by rewriting its Secret; the kubelet then swaps the volume's
//! `..data` link, and a file mounted some other way may be rewritten in place. Both show the
//! next time the files are read, so a check reads them again at the start of each run
//! ([`ClientIdentity::refresh`], on the blocking pool; unchanged files cost two small reads and a
//! hash). A pair that does not load (a half-written renewal: the new certificate beside the old
//! key) leaves the previous one in use and says why.
//!
//! Every connection gets its own [`Presenter`] in front of the identity: rustls asks it only
//! when the server sent a CertificateRequest, so it also tells the probe that the server wanted
//! a client certificate: a refusal can then say so rather than "handshake failed" or, in TLS 1.3
//! where the client's side of the handshake ends first, a bare alert on the first read.
//!
//! The key is read into memory and handed to rustls; no message, `Debug` output or log line
//! here contains it or anything parsed from it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, SignatureScheme};
use sha2::{Digest, Sha256};

use super::cert_time::earliest_not_after;
use crate::core::files;
use crate::core::secret::Secret;

/// Why a client certificate and key cannot be used. Names the files, never their content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IdentityError {
    #[error("client_cert_file {path}: {message}")]
    Cert { path: String, message: String },
    #[error("client_key_file {path}: {message}")]
    Key { path: String, message: String },
    #[error("client_key_file {key} is not the key of client_cert_file {cert}")]
    Mismatch { cert: String, key: String },
}

/// One pair as loaded.
struct Loaded {
    key: Arc<CertifiedKey>,
    /// The leaf's `notAfter`: our certificate's own expiry.
    not_after: Option<SystemTime>,
    /// Of both files' bytes: tells a renewal from the same files read again.
    digest: [u8; 32],
}

/// Our client certificate and key, as last loaded from their files.
pub(crate) struct ClientIdentity {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Loaded>,
    /// A refresh is on the blocking pool: another one waits for the next run rather than
    /// stacking threads behind a read that hangs.
    refreshing: AtomicBool,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// Reads and checks the pair now (blocking: at build, as `ca_file` is read).
    pub(crate) fn load(cert_file: &Path, key_file: &Path) -> Result<ClientIdentity, IdentityError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let loaded = read_pair(cert_file, key_file, &provider)?;
        Ok(ClientIdentity {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            provider,
            current: RwLock::new(loaded),
            refreshing: AtomicBool::new(false),
        })
    }

    pub(crate) fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    /// The expiry of the certificate presented now.
    pub(crate) fn not_after(&self) -> Option<SystemTime> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).not_after
    }

    fn key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner).key)
    }

    /// Reads the files again and, when they changed and load, presents the new pair from the
    /// next handshake on (logged). `Ok(true)`: replaced. An error leaves the previous pair in
    /// use. Blocking.
    pub(crate) fn reload(&self) -> Result<bool, IdentityError> {
        let (cert, key) = read_files(&self.cert_file, &self.key_file)?;
        let digest = digest(&cert, &key);
        if digest == self.current.read().unwrap_or_else(PoisonError::into_inner).digest {
            return Ok(false);
        }
        let loaded = parse_pair(&self.cert_file, &self.key_file, &cert, &key, digest, &self.provider)?;
        let not_after = loaded.not_after;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded;
        tracing::info!(
            cert_file = %self.cert_file.display(),
            not_after = not_after.map(|t| humantime::format_rfc3339_seconds(t).to_string()).unwrap_or_default(),
            "Client certificate reloaded: its files changed"
        );
        Ok(true)
    }

    /// [`ClientIdentity::reload`] on the blocking pool; a refresh already running (a read that
    /// hangs) is not joined by another: this one reports nothing new.
    pub(crate) async fn refresh(self: &Arc<Self>) -> Result<bool, IdentityError> {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        let identity = Arc::clone(self);
        let done = tokio::task::spawn_blocking(move || {
            let result = identity.reload();
            identity.refreshing.store(false, Ordering::Release);
            result
        })
        .await;
        match done {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Ok(false),
        }
    }
}

/// What rustls asks on one connection when the server wants a client certificate: the current
/// pair, if there is one; and it notes that it was asked.
#[derive(Debug)]
pub(crate) struct Presenter {
    identity: Option<Arc<ClientIdentity>>,
    asked: Arc<AtomicBool>,
}

impl Presenter {
    /// A presenter for one connection, and where it notes that the server asked.
    pub(crate) fn new(identity: Option<Arc<ClientIdentity>>) -> (Presenter, Arc<AtomicBool>) {
        let asked = Arc::new(AtomicBool::new(false));
        (
            Presenter {
                identity,
                asked: Arc::clone(&asked),
            },
            asked,
        )
    }
}

impl ResolvesClientCert for Presenter {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Release);
        self.identity.as_ref().map(|identity| identity.key())
    }

    fn has_certs(&self) -> bool {
        self.identity.is_some()
    }
}

fn read_pair(cert_file: &Path, key_file: &Path, provider: &CryptoProvider) -> Result<Loaded, IdentityError> {
    let (cert, key) = read_files(cert_file, key_file)?;
    let digest = digest(&cert, &key);
    parse_pair(cert_file, key_file, &cert, &key, digest, provider)
}

/// Both files' bytes, through the one file reader (regular files only, capped).
fn read_files(cert_file: &Path, key_file: &Path) -> Result<(Vec<u8>, Secret<Vec<u8>>), IdentityError> {
    let cert = files::read(cert_file, files::CA_CAP).map_err(|e| IdentityError::Cert {
        path: cert_file.display().to_string(),
        message: e.to_string(),
    })?;
    let key = files::read(key_file, files::SECRET_CAP).map_err(|e| IdentityError::Key {
        path: key_file.display().to_string(),
        message: e.to_string(),
    })?;
    Ok((cert, Secret::new(key)))
}

fn digest(cert: &[u8], key: &Secret<Vec<u8>>) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update((cert.len() as u64).to_be_bytes());
    hash.update(cert);
    hash.update(key.expose());
    hash.finalize().into()
}

fn parse_pair(
    cert_file: &Path,
    key_file: &Path,
    cert: &[u8],
    key: &Secret<Vec<u8>>,
    digest: [u8; 32],
    provider: &CryptoProvider,
) -> Result<Loaded, IdentityError> {
    let cert_error = |message: String| IdentityError::Cert {
        path: cert_file.display().to_string(),
        message,
    };
    // The key's parser errors can quote a line of the file: none is passed on.
    let key_error = |message: &str| IdentityError::Key {
        path: key_file.display().to_string(),
        message: message.to_owned(),
    };
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(format!("not a valid PEM certificate: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(cert_error("holds no PEM certificate".to_owned()));
    };
    let not_after = earliest_not_after(std::iter::once(leaf));
    let private = PrivateKeyDer::from_pem_slice(key.expose())
        .map_err(|_| key_error("holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"))?;
    let certified = CertifiedKey::from_der(chain, private, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => IdentityError::Mismatch {
            cert: cert_file.display().to_string(),
            key: key_file.display().to_string(),
        },
        rustls::Error::InvalidCertificate(_) => cert_error("not a certificate rustls can read".to_owned()),
        _ => key_error("not a private key of a kind TLS can sign with (RSA, ECDSA or Ed25519)"),
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        not_after,
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_pair_loads_a_renewal_replaces_it_and_a_broken_one_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let (cert, key) = pair("first");
        std::fs::write(&cert_path, &cert).unwrap();
        std::fs::write(&key_path, &key).unwrap();
        let identity = ClientIdentity::load(&cert_path, &key_path).unwrap();
        assert!(identity.not_after().is_some());
        assert_eq!(identity.reload(), Ok(false), "unchanged");
        let before = identity.key();

        // Half a renewal: the new certificate beside the old key.
        let (renewed_cert, renewed_key) = pair("second");
        std::fs::write(&cert_path, &renewed_cert).unwrap();
        let error = identity.reload().unwrap_err();
        assert!(matches!(error, IdentityError::Mismatch { .. }), "{error}");
        assert!(Arc::ptr_eq(&before, &identity.key()), "the previous pair stays");
        std::fs::write(&key_path, &renewed_key).unwrap();
        assert_eq!(identity.reload(), Ok(true));
        assert!(!Arc::ptr_eq(&before, &identity.key()));

        let debug = format!("{identity:?}");
        assert!(!debug.contains("PRIVATE") && debug.contains("tls.crt"), "{debug}");
    }

    #[test]
    fn errors_name_the_file_and_never_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = pair("x");
        let cert_path = dir.path().join("tls.crt");
        std::fs::write(&cert_path, &cert).unwrap();
        let key_path = dir.path().join("tls.key");
        std::fs::write(
            &key_path,
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let error = ClientIdentity::load(&cert_path, &key_path).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("client_key_file {}: ", key_path.display())),
            "{error}"
        );
        assert!(!error.contains("c2VjcmV0") && !error.contains("secret"), "{error}");
        std::fs::write(&key_path, "garbage line that might be a key\n").unwrap();
        let error = ClientIdentity::load(&cert_path, &key_path).unwrap_err().to_string();
        assert!(!error.contains("garbage"), "{error}");
        let error = ClientIdentity::load(&dir.path().join("none"), &key_path)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("client_cert_file "), "{error}");
    }
}
