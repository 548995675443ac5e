//! Signing keys (docs/certification.md 8.4): Ed25519 in PKCS#8 PEM (private key files mode 0600),
//! public keys in SPKI PEM, key id = hex SHA-256 of the raw 32-byte public key.

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
pub use ed25519_dalek::SigningKey;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where `certify` keeps the development key when no `--key` is given, relative to the
/// working directory. Certificates signed with it say so.
pub const DEVELOPMENT_KEY: &str = "keys/development.key";

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct KeyError {
    pub path: String,
    pub message: String,
}

fn key_error(path: &Path, message: impl Into<String>) -> KeyError {
    KeyError { path: path.display().to_string(), message: message.into() }
}

/// The key id of a public key: hex SHA-256 of its raw bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The public key file that goes with a private key file: `x.key` -> `x.pub`.
pub fn public_path(private: &Path) -> PathBuf {
    private.with_extension("pub")
}

fn read_pem(path: &Path) -> Result<String, KeyError> {
    let bytes = std::fs::read(path).map_err(|e| key_error(path, format!("cannot read the key: {e}")))?;
    String::from_utf8(bytes).map_err(|_| key_error(path, "not a PEM file (not text)"))
}

/// Reads an Ed25519 private key (PKCS#8 PEM).
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let pem = read_pem(path)?;
    if pem.contains("-----BEGIN PUBLIC KEY-----") {
        return Err(key_error(path, "is a public key; signing needs the private key (PKCS#8 PEM)"));
    }
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| key_error(path, format!("not an Ed25519 private key in PKCS#8 PEM ({e})")))
}

/// Reads an Ed25519 public key (SPKI PEM).
pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let pem = read_pem(path)?;
    if pem.contains("PRIVATE KEY-----") {
        return Err(key_error(path, "is a private key; verification takes the public key (.pub)"));
    }
    VerifyingKey::from_public_key_pem(&pem)
        .map_err(|e| key_error(path, format!("not an Ed25519 public key in SPKI PEM ({e})")))
}

/// Trusted public keys by key id.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    keys: BTreeMap<String, (VerifyingKey, String)>,
}

impl Keyring {
    /// Adds a public key file.
    pub fn add_file(&mut self, path: &Path) -> Result<(), KeyError> {
        let key = read_verifying_key(path)?;
        self.keys.insert(key_id(&key), (key, path.display().to_string()));
        Ok(())
    }

    /// Adds every `*.pub` file of a directory.
    pub fn add_dir(&mut self, dir: &Path) -> Result<(), KeyError> {
        let entries = std::fs::read_dir(dir).map_err(|e| key_error(dir, format!("cannot read the keyring: {e}")))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pub"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(key_error(dir, "the keyring holds no *.pub file"));
        }
        paths.iter().try_for_each(|p| self.add_file(p))
    }

    /// Adds a key held in memory (the public half of a signing key), naming where it is from.
    pub fn add_key(&mut self, key: VerifyingKey, source: &str) {
        self.keys.insert(key_id(&key), (key, source.to_string()));
    }

    /// The key with this id and where it came from.
    pub fn get(&self, key_id: &str) -> Option<(&VerifyingKey, &str)> {
        self.keys.get(key_id).map(|(k, p)| (k, p.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Creates a file that does not exist yet, with `mode` on Unix.
fn create_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| key_error(parent, e.to_string()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            key_error(path, "already exists; not overwritten")
        } else {
            key_error(path, e.to_string())
        }
    })?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| key_error(path, e.to_string()))
}

/// Generates a key pair from the operating system's entropy and writes `<stem>.key`
/// (PKCS#8 v1 PEM, mode 0600) and `<stem>.pub` (SPKI PEM). Existing files are never
/// overwritten.
pub fn generate(private: &Path) -> Result<SigningKey, KeyError> {
    let public = public_path(private);
    if private.exists() {
        return Err(key_error(private, "already exists; not overwritten"));
    }
    if public.exists() {
        return Err(key_error(&public, "already exists; not overwritten"));
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    write_pair(private, &key)?;
    Ok(key)
}

/// The fixed start of an Ed25519 private key in PKCS#8 v1 DER (RFC 8410, section 7):
/// `SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }`;
/// the 32-byte seed follows.
const PKCS8_V1_ED25519: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// `key` as a PKCS#8 v1 PEM, the form `openssl genpkey -algorithm ed25519` writes. The
/// v2 form (with the public key inside) that `to_pkcs8_pem` writes is refused by OpenSSL
/// 3.0 and Python's `cryptography` ("extra data"); both forms read back here.
pub fn private_pem(key: &SigningKey) -> String {
    let mut der = zeroize::Zeroizing::new(Vec::with_capacity(48));
    der.extend_from_slice(&PKCS8_V1_ED25519);
    der.extend_from_slice(key.as_bytes());
    ed25519_dalek::pkcs8::spki::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &der)
        .expect("48 bytes always encode")
}

/// Writes `key` as `private` (PKCS#8 v1 PEM, mode 0600) and its public half beside it.
pub fn write_pair(private: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let pem = zeroize::Zeroizing::new(private_pem(key));
    let public = public_path(private);
    let public_pem =
        key.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|e| key_error(&public, e.to_string()))?;
    create_new(private, pem.as_bytes(), 0o600)?;
    create_new(&public, public_pem.as_bytes(), 0o644)
}

/// The development key: read from `path` if it exists, created there otherwise. Returns
/// the key and whether it was created now.
pub fn development_key(path: &Path) -> Result<(SigningKey, bool), KeyError> {
    if path.exists() {
        return read_signing_key(path).map(|k| (k, false));
    }
    generate(path).map(|k| (k, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::EncodePrivateKey;

    #[test]
    fn a_generated_pair_reads_back_and_the_private_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("release.key");
        let key = generate(&private).unwrap();
        assert_eq!(read_signing_key(&private).unwrap().to_bytes(), key.to_bytes());
        let public = read_verifying_key(&dir.path().join("release.pub")).unwrap();
        assert_eq!(public, key.verifying_key());
        assert_eq!(key_id(&public).len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let again = generate(&private).unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
    }

    /// Reads a DER TLV at the start of `bytes` (short and one-byte long lengths, all an
    /// Ed25519 key needs): its tag, its content and the rest. Written here, apart from the
    /// `der` crate, so the test does not check the encoder with itself.
    fn tlv(bytes: &[u8]) -> (u8, &[u8], &[u8]) {
        let (tag, first) = (bytes[0], bytes[1]);
        let (len, start) = if first < 0x80 { (first as usize, 2) } else { (bytes[2] as usize, 3) };
        (tag, &bytes[start..start + len], &bytes[start + len..])
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        use base64::Engine;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    }

    #[test]
    fn keygen_writes_pkcs8_v1_that_an_independent_reader_parses() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("release.key");
        let key = generate(&private).unwrap();
        let pem = std::fs::read_to_string(&private).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let der = pem_der(&pem);
        let (tag, info, rest) = tlv(&der);
        assert_eq!((tag, rest.len()), (0x30, 0), "one SEQUENCE, nothing after it");
        let (tag, version, info) = tlv(info);
        assert_eq!((tag, version), (0x02, &[0u8][..]), "version 0: PKCS#8 v1");
        let (tag, algorithm, info) = tlv(info);
        assert_eq!(tag, 0x30);
        assert_eq!(tlv(algorithm), (0x06, &[0x2b, 0x65, 0x70][..], &[][..]), "OID 1.3.101.112, no parameters");
        let (tag, private_key, info) = tlv(info);
        assert_eq!(tag, 0x04);
        assert!(info.is_empty(), "no attributes and no public key (v2's [1])");
        let (tag, seed, rest) = tlv(private_key);
        assert_eq!((tag, seed, rest.len()), (0x04, &key.to_bytes()[..], 0));
    }

    #[test]
    fn keys_of_earlier_versions_and_of_openssl_still_load() {
        let dir = tempfile::tempdir().unwrap();
        // seedcore before this change wrote PKCS#8 v2 (the public key inside).
        let key = SigningKey::from_bytes(&[9; 32]);
        let v2 = dir.path().join("v2.key");
        std::fs::write(&v2, key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
        assert_eq!(read_signing_key(&v2).unwrap().to_bytes(), key.to_bytes());
        // `openssl genpkey -algorithm ed25519` (OpenSSL 3.0.19), and its `pkey -pubout`.
        let openssl = dir.path().join("openssl.key");
        std::fs::write(
            &openssl,
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJh5fqjAPqnIItiRGUJD6+Hn7c5aXLMINExLG2+5CbRY\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let public = dir.path().join("openssl.pub");
        std::fs::write(
            &public,
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAxG/3dm79vm1HOu7VoPF0W/ABCxalpQKH6UnHeWu/nz8=\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        let from_openssl = read_signing_key(&openssl).unwrap();
        assert_eq!(from_openssl.verifying_key(), read_verifying_key(&public).unwrap());
        // And what keygen writes is byte for byte what OpenSSL writes for the same key.
        assert_eq!(private_pem(&from_openssl), std::fs::read_to_string(&openssl).unwrap());
    }

    #[test]
    fn wrong_files_get_errors_that_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("k.key");
        generate(&private).unwrap();
        let public = dir.path().join("k.pub");
        let swapped = read_verifying_key(&private).unwrap_err().to_string();
        assert!(swapped.contains("k.key") && swapped.contains("private key"), "{swapped}");
        let swapped = read_signing_key(&public).unwrap_err().to_string();
        assert!(swapped.contains("public key"), "{swapped}");
        let junk = dir.path().join("junk.pub");
        std::fs::write(&junk, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").unwrap();
        let error = read_verifying_key(&junk).unwrap_err().to_string();
        assert!(error.contains("junk.pub") && error.contains("not an Ed25519 public key"), "{error}");
        let missing = read_verifying_key(&dir.path().join("none.pub")).unwrap_err().to_string();
        assert!(missing.contains("none.pub") && missing.contains("cannot read"), "{missing}");
    }

    #[test]
    fn a_keyring_finds_keys_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate(&dir.path().join("a.key")).unwrap();
        let b = generate(&dir.path().join("b.key")).unwrap();
        let mut ring = Keyring::default();
        ring.add_dir(dir.path()).unwrap();
        assert!(ring.get(&key_id(&a.verifying_key())).is_some());
        assert!(ring.get(&key_id(&b.verifying_key())).is_some());
        assert!(ring.get(&"0".repeat(64)).is_none());
    }
}
