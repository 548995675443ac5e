//! Bearer tokens at the gateway (docs/live.md 4.11, "Authentication").
//!
//! A tokens file holds one token a line, `sha256:<hex> <name> <scope>[,<scope>...]`, with
//! `#` comments: the token's SHA-256, never the token. `seedcore token create` appends to
//! it (mode 0600) and prints the token once. A request's token is hashed and compared with
//! every stored digest in constant time (`subtle`), so neither the comparison nor the scan
//! says how much of a token matched or which entry it was near. The token's name, never
//! the token, goes to the logs and the capture.

use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// `/v1/tasks`, `/ocps/route`.
    Submit,
    /// Status, state, energy, tier 2.5 retrieve (and `/metrics` with `--metrics-scope read`).
    Read,
    /// `/safety/validate`, tier 2.5 store.
    Operate,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Submit, Scope::Read, Scope::Operate];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Submit => "submit",
            Scope::Read => "read",
            Scope::Operate => "operate",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One stored token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub digest: [u8; 32],
    pub name: String,
    pub scopes: Vec<Scope>,
}

/// The tokens the gateway accepts.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

/// Who a request's token says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub scopes: Vec<Scope>,
}

/// Why a request is refused: 401 or 403.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header, or a token that is not in the file.
    Unauthenticated(&'static str),
    /// A valid token without the scope the endpoint needs.
    Forbidden { name: String, needs: Scope },
}

/// A token's name: letters, digits, `.`, `_` and `-`, 1 to 64 of them.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Reads a tokens file; errors name the file and line.
    pub fn read(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|(line, e)| format!("{}:{line}: {e}", path.display()))
    }

    /// Parses a tokens file's text; an error carries its line number.
    pub fn parse(text: &str) -> Result<Tokens, (usize, String)> {
        let mut entries: Vec<Entry> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [hash, name, scopes] = fields[..] else {
                return Err((line_no, "expected `sha256:<64 hex digits> NAME SCOPE[,SCOPE...]`".into()));
            };
            let digest = hash
                .strip_prefix("sha256:")
                .and_then(|h| hex::decode(h).ok())
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
                .ok_or_else(|| (line_no, "the digest is not `sha256:` and 64 hex digits".to_string()))?;
            if !valid_name(name) {
                return Err((line_no, format!("{name:?} is not a token name (letters, digits, . _ -; 1 to 64)")));
            }
            let scopes = scopes
                .split(',')
                .map(|s| {
                    Scope::parse(s).ok_or_else(|| (line_no, format!("{s:?} is not a scope (submit, read, operate)")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if entries.iter().any(|e| e.name == name) {
                return Err((line_no, format!("the name {name:?} is given twice")));
            }
            entries.push(Entry { digest, name: name.to_string(), scopes });
        }
        Ok(Tokens { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The caller a token belongs to: every entry is compared, in constant time.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        let presented = digest(token);
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&presented)) {
                found = Some(entry);
            }
        }
        found.map(|e| Caller { name: e.name.clone(), scopes: e.scopes.clone() })
    }

    /// The caller of a request with this `Authorization` header, if it may use `needs`
    /// (`None`: any valid token).
    pub fn authorize(&self, authorization: Option<&[u8]>, needs: Option<Scope>) -> Result<Caller, Refusal> {
        let header = authorization.ok_or(Refusal::Unauthenticated("no bearer token (Authorization: Bearer TOKEN)"))?;
        let token = std::str::from_utf8(header)
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Unauthenticated("the Authorization header is not `Bearer TOKEN`"))?;
        let caller = self.caller(token).ok_or(Refusal::Unauthenticated("the token is not valid"))?;
        match needs {
            Some(scope) if !caller.scopes.contains(&scope) => {
                Err(Refusal::Forbidden { name: caller.name, needs: scope })
            }
            _ => Ok(caller),
        }
    }
}

/// A fresh token: `sct_` and 64 hex digits of the operating system's randomness.
#[allow(clippy::disallowed_methods, reason = "a secret: the OS's randomness, never a seeded stream")]
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("sct_{}", hex::encode(bytes))
}

/// Appends a new token named `name` with `scopes` to the tokens file at `path` (created
/// mode 0600; an existing file must not be readable by others) and returns the token.
pub fn create(path: &Path, name: &str, scopes: &[Scope]) -> Result<String, String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if !valid_name(name) {
        return Err(format!("--name {name:?}: letters, digits, . _ - only, 1 to 64 of them"));
    }
    if scopes.is_empty() {
        return Err("give at least one --scope (submit, read, operate)".into());
    }
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Tokens::parse(&text).map_err(|(line, e)| format!("{}:{line}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Tokens::default(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if existing.entries.iter().any(|e| e.name == name) {
        return Err(format!("{}: a token named {name:?} is already there", path.display()));
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = file.metadata().map_err(|e| format!("{}: {e}", path.display()))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!("{}: mode {:o} lets others read it; chmod 600 it first", path.display(), mode & 0o777));
    }
    let token = new_token();
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let line = format!("sha256:{} {name} {}\n", hex::encode(digest(&token)), scopes.join(","));
    file.write_all(line.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tokens: &[(&str, &str, &str)]) -> Tokens {
        let text: String = tokens
            .iter()
            .map(|(token, name, scopes)| format!("sha256:{} {name} {scopes}\n", hex::encode(digest(token))))
            .collect();
        Tokens::parse(&format!("# tokens\n\n{text}")).unwrap()
    }

    #[test]
    fn a_token_is_known_by_its_digest_and_checked_for_its_scope() {
        let tokens = file(&[("sct_a", "loader", "submit"), ("sct_b", "dash", "read,operate")]);
        let auth = |h: &str, needs| tokens.authorize(Some(h.as_bytes()), needs);
        assert_eq!(auth("Bearer sct_a", Some(Scope::Submit)).unwrap().name, "loader");
        assert_eq!(
            auth("Bearer sct_a", Some(Scope::Read)),
            Err(Refusal::Forbidden { name: "loader".into(), needs: Scope::Read })
        );
        assert_eq!(auth("Bearer sct_b", Some(Scope::Operate)).unwrap().name, "dash");
        assert_eq!(auth("Bearer sct_b", None).unwrap().name, "dash");
        for bad in ["Bearer sct_c", "Bearer ", "Basic sct_a", "sct_a", "Bearer sct_a2"] {
            assert!(matches!(auth(bad, Some(Scope::Submit)), Err(Refusal::Unauthenticated(_))), "{bad}");
        }
        assert!(matches!(tokens.authorize(None, None), Err(Refusal::Unauthenticated(_))));
        assert!(matches!(tokens.authorize(Some(&[0xff, 0xfe]), None), Err(Refusal::Unauthenticated(_))));
    }

    #[test]
    fn a_bad_tokens_file_names_its_line() {
        let good = format!("sha256:{} a submit", "0".repeat(64));
        for (text, line, says) in [
            (format!("{good}\nsha256:12 b read"), 2, "64 hex"),
            (format!("# c\n{good}\nsha256:{} b write", "1".repeat(64)), 3, "not a scope"),
            (format!("{good}\n{good}"), 2, "twice"),
            (format!("sha256:{} b@x read", "1".repeat(64)), 1, "not a token name"),
            ("just-a-token".to_string(), 1, "expected"),
        ] {
            let (at, error) = Tokens::parse(&text).unwrap_err();
            assert_eq!(at, line, "{text}");
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn create_appends_a_digest_never_the_token_and_keeps_the_file_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("seedcore-tokens-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        let first = create(&path, "loader", &[Scope::Submit]).unwrap();
        let second = create(&path, "ops", &[Scope::Read, Scope::Operate]).unwrap();
        assert!(first.starts_with("sct_") && first.len() == 68 && first != second);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&first) && !text.contains(&second), "{text}");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let tokens = Tokens::read(&path).unwrap();
        assert_eq!(tokens.caller(&second).unwrap().scopes, [Scope::Read, Scope::Operate]);
        assert!(create(&path, "ops", &[Scope::Read]).unwrap_err().contains("already there"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(create(&path, "other", &[Scope::Read]).unwrap_err().contains("chmod 600"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
