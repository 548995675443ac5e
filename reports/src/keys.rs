//! Signing keys (SPEC 8.4): Ed25519 in PKCS#8 PEM (private key files mode 0600), public
//! keys in SPKI PEM, key id = hex SHA-256 of the raw 32-byte public key.

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
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
/// (PKCS#8 PEM, mode 0600) and `<stem>.pub` (SPKI PEM). Existing files are never
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

/// Writes `key` as `private` (mode 0600) and its public half beside it.
pub fn write_pair(private: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| key_error(private, e.to_string()))?;
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
