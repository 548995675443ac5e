//! Mutual TLS between roles, live (docs/engine.md 2.3): a directory of PEM files, one CA and a key
//! and certificate per role, as `seedcore certs DIR` writes them (`write_development_pki`).
//!
//! Every role's port requires a client certificate signed by the directory's CA (a caller
//! without one fails the handshake) and every caller checks that the port's certificate,
//! signed by the same CA, names `ENGINE_NAME`: a role is authenticated as one of this
//! deployment's engine roles whatever the DNS name or address it was reached at, so peers
//! may be named by IP, by a Kubernetes Service or by `localhost` alike. The gateway's
//! certificate is for calling only: it does not name `ENGINE_NAME`. TLS 1.3 only, ring as
//! the crypto provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The name every engine role's certificate carries, and every caller verifies.
pub const ENGINE_NAME: &str = "seedcore-engine";

/// One role's TLS: its port's acceptor and its calls' client configuration.
pub struct Tls {
    server: Arc<rustls::ServerConfig>,
    client: tonic::transport::ClientTlsConfig,
}

fn read(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>), String> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok((path, bytes)),
        Err(e) => Err(format!("{}: {e} (`seedcore certs {}` writes it)", path.display(), dir.display())),
    }
}

impl Tls {
    /// The TLS of `role` (`coordinator`, `fast-2`, `gateway`...) from `dir`: `ca.pem`,
    /// `<role>.pem` and `<role>.key`. Errors name the file.
    pub fn load(dir: &Path, role: &str) -> Result<Tls, String> {
        let (ca_path, ca) = read(dir, "ca.pem")?;
        let (cert_path, cert) = read(dir, &format!("{role}.pem"))?;
        let (key_path, key) = read(dir, &format!("{role}.key"))?;
        let bad = |path: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_slice_iter(&ca) {
            roots.add(der.map_err(|e| bad(&ca_path, &e))?).map_err(|e| bad(&ca_path, &e))?;
        }
        if roots.is_empty() {
            return Err(format!("{}: no certificate in it", ca_path.display()));
        }
        let chain =
            CertificateDer::pem_slice_iter(&cert).collect::<Result<Vec<_>, _>>().map_err(|e| bad(&cert_path, &e))?;
        if chain.is_empty() {
            return Err(format!("{}: no certificate in it", cert_path.display()));
        }
        let private = PrivateKeyDer::from_pem_slice(&key).map_err(|e| bad(&key_path, &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| bad(&ca_path, &e))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, private)
            .map_err(|e| format!("{} and {}: {e}", cert_path.display(), key_path.display()))?;
        server.alpn_protocols = vec![b"h2".to_vec()];
        let client = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
            .identity(tonic::transport::Identity::from_pem(&cert, &key))
            .domain_name(ENGINE_NAME);
        Ok(Tls { server: Arc::new(server), client })
    }

    /// The acceptor of the role's port.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server.clone())
    }

    /// The client configuration of the role's calls.
    pub fn client(&self) -> tonic::transport::ClientTlsConfig {
        self.client.clone()
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// What `write_development_pki` wrote.
#[derive(Debug)]
pub struct Written {
    pub files: Vec<PathBuf>,
    pub expires: (i32, u8, u8),
}

/// Writes a development CA (`ca.pem`, `ca.key`) and a key and certificate per role
/// (`<role>.pem`, `<role>.key`; keys mode 0600) into `dir`, valid from yesterday for
/// `days`. Engine roles' certificates name `ENGINE_NAME` and the role; `gateway`'s is for
/// client authentication only. Refuses a directory that already holds a `ca.pem`.
#[allow(clippy::disallowed_methods, clippy::disallowed_types, reason = "live only: certificates are dated in UTC")]
pub fn write_development_pki(dir: &Path, roles: &[String], days: u32) -> Result<Written, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    if dir.join("ca.pem").exists() {
        return Err(format!("{}: it already holds a CA (ca.pem); give an empty or new directory", dir.display()));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs() / 86_400).unwrap_or(0));
    let date = |days: i64| {
        let (y, m, d) = civil(days);
        rcgen::date_time_ymd(y, m, d)
    };
    let (from, to) = (date(today - 1), date(today + i64::from(days)));
    let failed = |e: rcgen::Error| format!("cannot make a certificate: {e}");
    let name = |common: &str| {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "seedcore");
        dn.push(DnType::CommonName, common);
        dn
    };

    let ca_key = KeyPair::generate().map_err(failed)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name = name("seedcore development CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    (ca.not_before, ca.not_after) = (from, to);
    let ca_cert = ca.self_signed(&ca_key).map_err(failed)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut files = Vec::new();
    let mut write = |file: &str, text: &str, secret: bool| -> Result<(), String> {
        let path = dir.join(file);
        write_new(&path, text.as_bytes(), secret).map_err(|e| format!("{}: {e}", path.display()))?;
        files.push(path);
        Ok(())
    };
    write("ca.pem", &ca_cert.pem(), false)?;
    write("ca.key", &issuer.key().serialize_pem(), true)?;
    for role in roles {
        let key = KeyPair::generate().map_err(failed)?;
        let engine = role != "gateway";
        let names = if engine { vec![ENGINE_NAME.to_string(), role.clone()] } else { vec![role.clone()] };
        let mut params = CertificateParams::new(names).map_err(failed)?;
        params.distinguished_name = name(role);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = if engine {
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        (params.not_before, params.not_after) = (from, to);
        let cert = params.signed_by(&key, &issuer).map_err(failed)?;
        write(&format!("{role}.pem"), &cert.pem(), false)?;
        write(&format!("{role}.key"), &key.serialize_pem(), true)?;
    }
    Ok(Written { files, expires: civil(today + i64::from(days)) })
}

/// Creates `path` (never over an existing file), mode 0600 for a secret.
fn write_new(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(if secret { 0o600 } else { 0o644 }).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(20_793), (2026, 12, 6));
    }

    #[test]
    fn a_written_directory_loads_for_every_role_and_is_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("seedcore-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let roles = ["coordinator", "fast-1", "gateway"].map(String::from);
        let written = write_development_pki(&dir, &roles, 30).unwrap();
        assert_eq!(written.files.len(), 2 + 2 * roles.len());
        for role in &roles {
            assert!(Tls::load(&dir, role).is_ok(), "{role}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("fast-1.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = write_development_pki(&dir, &roles, 30).unwrap_err();
        assert!(again.contains("already holds a CA"), "{again}");
        let missing = Tls::load(&dir, "deep-1").err().unwrap();
        assert!(missing.contains("deep-1.pem"), "{missing}");
        std::fs::write(dir.join("state.pem"), "not a certificate").unwrap();
        std::fs::copy(dir.join("fast-1.key"), dir.join("state.key")).unwrap();
        let bad = Tls::load(&dir, "state").err().unwrap();
        assert!(bad.contains("state.pem"), "{bad}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
