//! Records what a reviewer needs to rebuild this binary, for the certificate's statement
//! (ISSUE 8): the compiler, the target triple, the SHA-256 of `Cargo.lock`, and the source
//! commit with whether the tree had uncommitted changes. Nothing here depends on the time
//! or the build directory, so two builds of one commit embed the same bytes.

use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".to_string(), |o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    println!("cargo:rustc-env=SEEDCORE_RUSTC={version}");
    println!("cargo:rustc-env=SEEDCORE_TARGET={}", std::env::var("TARGET").unwrap_or_default());
    let lock = std::fs::read("Cargo.lock").map(|b| hex::encode(Sha256::digest(b))).unwrap_or_default();
    println!("cargo:rustc-env=SEEDCORE_CARGO_LOCK_SHA256={lock}");
    println!("cargo:rerun-if-changed=Cargo.lock");

    let (commit, dirty) = if Path::new(".git").exists() {
        // Rerun when HEAD moves or the tree changes, so the commit and the dirty flag are
        // never stale.
        for path in [".git/HEAD", ".git/index", "src", "engine", "sim", "chaos", "reports", "Cargo.toml"] {
            println!("cargo:rerun-if-changed={path}");
        }
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed=.git/{reference}");
        }
        let commit = git(&["rev-parse", "HEAD"]).unwrap_or_default();
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        (commit, dirty)
    } else {
        (String::new(), false)
    };
    println!("cargo:rustc-env=SEEDCORE_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=SEEDCORE_GIT_DIRTY={dirty}");
}
