//! The TLS side's certificate and acceptor: the configured certificate and key, else a
//! self-signed pair generated on first start and kept in `[stun] data_dir` (`cert.pem`, and
//! `key.pem` with mode 0600), reused on every later start so that pinned fingerprints hold.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

use crate::config::StunConfig;

/// File name of the generated certificate in `data_dir`.
pub const CERT_FILE: &str = "cert.pem";
/// File name of the generated key in `data_dir`.
pub const KEY_FILE: &str = "key.pem";
/// Names the generated certificate is made for (clients pin its fingerprint instead).
const GENERATED_NAMES: [&str; 2] = ["jasper-stun", "localhost"];

/// Why the certificate could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM certificate or key.
    #[error("{path}: {what}; give a PEM certificate chain and its PEM private key")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// rcgen could not make a certificate.
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
    /// rustls refused the pair (say, the key does not match the certificate).
    #[error("the TLS certificate and key do not work together: {0}")]
    Tls(String),
}

/// The certificate chain and key the TLS listener presents.
#[derive(Debug)]
pub struct ServerCertificate {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// Whether it was generated during this start.
    pub generated: bool,
}

impl ServerCertificate {
    /// The leaf certificate (DER): what clients pin and what rendezvous signatures are bound
    /// to ([`crate::proto::rendezvous::auth_input`]).
    pub fn leaf(&self) -> &[u8] {
        self.chain[0].as_ref()
    }

    /// SHA-256 of the leaf certificate's DER.
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(self.leaf()).into()
    }

    /// [`Self::fingerprint`] as 64 lowercase hex digits (what `[client] rendezvous_fingerprint`
    /// takes).
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A TLS acceptor presenting this certificate (TLS 1.2 and 1.3, no client certificates).
    pub fn acceptor(&self) -> Result<TlsAcceptor, CertificateError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CertificateError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| CertificateError::Tls(e.to_string()))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// The configured pair, else the one kept in `data_dir`, else a new self-signed one written
/// there.
pub fn load_or_generate(config: &StunConfig) -> Result<ServerCertificate, CertificateError> {
    if let (Some(cert), Some(key)) = (&config.tls_certificate, &config.tls_key) {
        return load(cert, key);
    }
    let cert = config.data_dir.join(CERT_FILE);
    let key = config.data_dir.join(KEY_FILE);
    if cert.is_file() && key.is_file() {
        return load(&cert, &key);
    }
    generate(&config.data_dir)
}

/// Reads a PEM certificate chain and a PEM private key.
pub fn load(cert: &Path, key: &Path) -> Result<ServerCertificate, CertificateError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CertificateError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let pem_error = |path: &Path, what: String| CertificateError::Pem {
        path: path.to_path_buf(),
        what,
    };
    let cert_pem = read(cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(cert, "no CERTIFICATE block".into()));
    }
    let key_pem = read(key)?;
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| pem_error(key, e.to_string()))?;
    Ok(ServerCertificate {
        chain,
        key: key_der,
        generated: false,
    })
}

/// Makes a self-signed certificate and writes it into `dir` (the key with mode 0600).
fn generate(dir: &Path) -> Result<ServerCertificate, CertificateError> {
    let names: Vec<String> = GENERATED_NAMES.iter().map(|s| (*s).to_owned()).collect();
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| CertificateError::Generate(e.to_string()))?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CertificateError::Io { path, source }
    };
    crate::redb_file::create_private_dir(dir).map_err(io(dir))?;
    let key_path = dir.join(KEY_FILE);
    let cert_path = dir.join(CERT_FILE);
    // Write each file beside its final name, then rename: a crash leaves either nothing or a
    // whole file, and the key is never readable by others, not even for a moment.
    write_private(&key_path, made.signing_key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
    let tmp = cert_path.with_extension("pem.tmp");
    std::fs::write(&tmp, made.cert.pem()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &cert_path).map_err(io(&cert_path))?;
    Ok(ServerCertificate {
        chain: vec![made.cert.der().clone()],
        key: PrivateKeyDer::try_from(made.signing_key.serialize_der())
            .map_err(|e| CertificateError::Generate(e.to_string()))?,
        generated: true,
    })
}

/// Writes `bytes` to `path` through a temporary file created with mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("pem.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let config = StunConfig {
            data_dir: dir.path().join("stun"),
            ..StunConfig::default()
        };
        let first = load_or_generate(&config).unwrap();
        assert!(first.generated);
        first.acceptor().unwrap();
        let again = load_or_generate(&config).unwrap();
        assert!(!again.generated);
        assert_eq!(first.fingerprint_hex(), again.fingerprint_hex());
        assert_eq!(first.fingerprint_hex().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(config.data_dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn broken_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "nothing here").unwrap();
        let err = load(&cert, &cert).unwrap_err().to_string();
        assert!(err.contains("c.pem"), "{err}");
    }
}
