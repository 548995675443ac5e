//! The key a simulation-build command signs with (`certify`, `canary`): `--key`, or the
//! development key, created when missing and said on stderr.

use crate::exit::{usage, Failure};
use seedcore_reports::keys;
use std::path::Path;

/// The key to sign with: `--key`, or the development key (created when missing, and said).
pub fn signing_key(path: Option<&Path>) -> Result<(keys::SigningKey, bool), Failure> {
    if let Some(path) = path {
        return Ok((keys::read_signing_key(path)?, false));
    }
    let development = Path::new(keys::DEVELOPMENT_KEY);
    let (key, created) =
        keys::development_key(development).map_err(|error| usage(format!("development key: {error}")))?;
    eprintln!(
        "note: no --key given; {} the DEVELOPMENT key {} (public key {}). Its certificates are marked as development \
         ones, for local checks only; make a release key with `seedcore keygen keys/release.key`.",
        if created { "created" } else { "using" },
        keys::DEVELOPMENT_KEY,
        keys::public_path(development).display()
    );
    Ok((key, true))
}
