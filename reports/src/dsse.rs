//! DSSE envelopes (Dead Simple Signing Envelope, v1): Ed25519 over the pre-authentication
//! encoding `"DSSEv1" SP len(type) SP type SP len(body) SP body`, lengths in ASCII decimal.

use crate::keys::{key_id, Keyring};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};

/// The payload type of an in-toto statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// A signed envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The payload, standard base64.
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    pub keyid: String,
    /// The Ed25519 signature, standard base64.
    pub sig: String,
}

/// Why an envelope is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsseError {
    #[error("unknown payload type {found:?} (expected {expected:?})")]
    PayloadType { found: String, expected: String },
    #[error("the payload is not valid base64")]
    Payload,
    #[error("the envelope has no signature")]
    Unsigned,
    #[error("key not trusted: the envelope is signed by key id(s) {0}, none of which is given")]
    Untrusted(String),
    #[error("bad signature by key {keyid} ({path}): {reason}")]
    BadSignature { keyid: String, path: String, reason: String },
}

/// Reads a signed file of `name` (a certificate, an attestation) as seedcore writes it (the
/// envelope pretty-printed, with a final newline), at most `max_bytes`, and verifies its
/// in-toto envelope against the keyring. The signature is checked before the layout, so
/// that a forgery is reported as such; errors are prefixed with `name`.
pub fn read_signed_file(
    path: &std::path::Path,
    name: &str,
    max_bytes: u64,
    keyring: &Keyring,
) -> Result<Verified, String> {
    let size = std::fs::metadata(path).map_err(|e| format!("{name}: cannot read: {e}"))?.len();
    if size > max_bytes {
        return Err(format!("{name}: {size} bytes, more than a signed file of seedcore can be"));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let envelope: Envelope = serde_json::from_slice(&bytes).map_err(|e| format!("{name}: not a DSSE envelope: {e}"))?;
    let mut as_written = serde_json::to_vec_pretty(&envelope).expect("an envelope always serialises");
    as_written.push(b'\n');
    let verified = verify(&envelope, keyring).map_err(|e| format!("{name}: {e}"))?;
    if as_written != bytes {
        return Err(format!("{name}: the envelope file was altered (it is not as seedcore writes it)"));
    }
    Ok(verified)
}

/// The pre-authentication encoding of DSSE v1.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// Signs `payload` of `payload_type` with `key`.
pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Envelope {
    let signature = key.sign(&pae(payload_type, payload));
    Envelope {
        payload: STANDARD.encode(payload),
        payload_type: payload_type.to_string(),
        signatures: vec![EnvelopeSignature {
            keyid: key_id(&key.verifying_key()),
            sig: STANDARD.encode(signature.to_bytes()),
        }],
    }
}

/// A verified envelope: its payload and the key that vouched for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub payload: Vec<u8>,
    pub keyid: String,
    /// Where the trusted key was read from.
    pub key_source: String,
}

/// Verifies an in-toto envelope against trusted keys: the payload type must be in-toto,
/// and every signature by a trusted key must verify (`verify_strict`, which also refuses
/// weak keys and non-canonical signatures); at least one must be by a trusted key.
pub fn verify(envelope: &Envelope, keyring: &Keyring) -> Result<Verified, DsseError> {
    verify_as(envelope, IN_TOTO, keyring)
}

/// Verifies an envelope whose payload must be of `payload_type`, as `verify` does.
pub fn verify_as(envelope: &Envelope, payload_type: &str, keyring: &Keyring) -> Result<Verified, DsseError> {
    if envelope.payload_type != payload_type {
        return Err(DsseError::PayloadType { found: envelope.payload_type.clone(), expected: payload_type.into() });
    }
    let payload = STANDARD.decode(&envelope.payload).map_err(|_| DsseError::Payload)?;
    if envelope.signatures.is_empty() {
        return Err(DsseError::Unsigned);
    }
    let message = pae(&envelope.payload_type, &payload);
    let mut trusted = None;
    for signature in &envelope.signatures {
        let Some((key, path)) = keyring.get(&signature.keyid) else { continue };
        let bad = |reason: &str| DsseError::BadSignature {
            keyid: signature.keyid.clone(),
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let bytes = STANDARD.decode(&signature.sig).map_err(|_| bad("the signature is not valid base64"))?;
        let sig = Signature::from_slice(&bytes).map_err(|_| bad("the signature is not 64 bytes"))?;
        key.verify_strict(&message, &sig).map_err(|_| bad("does not verify over the payload"))?;
        trusted.get_or_insert((signature.keyid.clone(), path.to_string()));
    }
    match trusted {
        Some((keyid, key_source)) => Ok(Verified { payload, keyid, key_source }),
        None => Err(DsseError::Untrusted(
            envelope.signatures.iter().map(|s| s.keyid.as_str()).collect::<Vec<_>>().join(", "),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn ring(keys: &[&SigningKey]) -> Keyring {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = Keyring::default();
        for (i, k) in keys.iter().enumerate() {
            let path = dir.path().join(format!("{i}.key"));
            crate::keys::write_pair(&path, k).unwrap();
            ring.add_file(&crate::keys::public_path(&path)).unwrap();
        }
        ring
    }

    #[test]
    fn pae_matches_the_dsse_specification_example() {
        // The worked example of the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn a_signed_envelope_verifies_with_its_key_only() {
        let (a, b) = (key(1), key(2));
        let envelope = sign(IN_TOTO, b"{\"a\":1}", &a);
        let verified = verify(&envelope, &ring(&[&a])).unwrap();
        assert_eq!(verified.payload, b"{\"a\":1}");
        assert!(matches!(verify(&envelope, &ring(&[&b])), Err(DsseError::Untrusted(_))));
    }

    #[test]
    fn tampering_is_rejected() {
        let a = key(1);
        let trusted = ring(&[&a]);
        let envelope = sign(IN_TOTO, b"{\"a\":1}", &a);
        let mut other = envelope.clone();
        other.payload = STANDARD.encode(b"{\"a\":2}");
        assert!(matches!(verify(&other, &trusted), Err(DsseError::BadSignature { .. })));
        let mut other = envelope.clone();
        other.payload_type = "application/json".into();
        assert!(matches!(verify(&other, &trusted), Err(DsseError::PayloadType { .. })));
        let mut other = envelope.clone();
        other.signatures.clear();
        assert_eq!(verify(&other, &trusted), Err(DsseError::Unsigned));
        let mut other = envelope.clone();
        other.signatures[0].sig = STANDARD.encode([0u8; 64]);
        assert!(matches!(verify(&other, &trusted), Err(DsseError::BadSignature { .. })));
        let mut other = envelope;
        other.payload.push('!');
        assert_eq!(verify(&other, &trusted), Err(DsseError::Payload));
    }
}
