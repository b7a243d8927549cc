//! Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
//!
//! Following the spec exactly (rather than a leadscore-specific scheme) lets receivers use
//! the official verification libraries of every language.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::Sha256;

use crate::SigningError;

type HmacSha256 = Hmac<Sha256>;

const SECRET_PREFIX: &str = "whsec_";

/// Secrets pasted from other tools sometimes lose their `=` padding; the official SDKs
/// accept both, so we do too.
const LENIENT: GeneralPurpose =
    GeneralPurpose::new(&base64::alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));

/// A fresh webhook message id, `msg_` + 27 base62 characters, the shape Svix uses, so ids
/// look familiar to receivers and fit the spec's advice of a globally unique id per message
/// (the same id on every retry lets receivers deduplicate).
pub fn new_message_id() -> String {
    let random: String = rand::rng().sample_iter(Alphanumeric).take(27).map(char::from).collect();
    format!("msg_{random}")
}

/// A fresh signing secret: `whsec_` + base64 of 24 random bytes (192 bits, the size the
/// spec's examples and Svix use). `rand::rng()` is a CSPRNG seeded from the OS.
pub fn new_secret() -> String {
    let mut key = [0u8; 24];
    rand::rng().fill(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

fn decode_secret(secret: &str) -> Result<Vec<u8>, SigningError> {
    let encoded = secret.trim();
    let encoded = encoded.strip_prefix(SECRET_PREFIX).unwrap_or(encoded);
    let key = LENIENT.decode(encoded).map_err(|e| SigningError::InvalidSecret(format!("not base64: {e}")))?;
    if key.is_empty() {
        return Err(SigningError::InvalidSecret("the key is empty".into()));
    }
    Ok(key)
}

fn mac(key: &[u8], message_id: &str, timestamp_secs: i64, body: &[u8]) -> Result<HmacSha256, SigningError> {
    // HMAC takes keys of any length, so this error is not expected in practice.
    let mut mac = HmacSha256::new_from_slice(key).map_err(|e| SigningError::InvalidSecret(e.to_string()))?;
    mac.update(message_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

/// The `webhook-signature` header value for one message.
///
/// `secret` is `whsec_` + base64 key, or the bare base64 key.
pub fn sign(secret: &str, message_id: &str, timestamp_secs: i64, body: &[u8]) -> Result<String, SigningError> {
    let key = decode_secret(secret)?;
    let tag = mac(&key, message_id, timestamp_secs, body)?.finalize().into_bytes();
    Ok(format!("v1,{}", STANDARD.encode(tag)))
}

/// Whether `signature_header` holds a valid `v1` signature of this message.
///
/// The header may list several space-separated signatures (the spec's way to rotate
/// secrets without downtime); one match is enough. Unknown versions are skipped rather
/// than rejected, so a future `v1a` next to a `v1` still verifies. The comparison is
/// constant-time (`Mac::verify_slice`) so a receiver's timing does not leak the expected
/// signature. The timestamp's freshness is the receiver's policy and not checked here.
pub fn verify(secret: &str, message_id: &str, timestamp_secs: i64, body: &[u8], signature_header: &str) -> bool {
    let Ok(expected) = decode_secret(secret).and_then(|key| mac(&key, message_id, timestamp_secs, body)) else {
        return false;
    };
    signature_header.split_whitespace().any(|entry| {
        let Some(("v1", encoded)) = entry.split_once(',') else {
            return false;
        };
        let Ok(candidate) = STANDARD.decode(encoded) else {
            return false;
        };
        expected.clone().verify_slice(&candidate).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector published with the Standard Webhooks specification.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const EXPECTED: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn matches_the_spec_test_vector() {
        assert_eq!(sign(SECRET, ID, TS, BODY), Ok(EXPECTED.to_owned()));
        // The bare key (no prefix) and the key without padding sign the same.
        let bare = SECRET.trim_start_matches("whsec_");
        assert_eq!(sign(bare, ID, TS, BODY), Ok(EXPECTED.to_owned()));
    }

    #[test]
    fn verify_accepts_the_vector_and_rejects_tampering() {
        assert!(verify(SECRET, ID, TS, BODY, EXPECTED));
        assert!(!verify(SECRET, ID, TS, br#"{"email":"test@example.com","username":"test_user2"}"#, EXPECTED));
        assert!(!verify(SECRET, "msg_other", TS, BODY, EXPECTED));
        assert!(!verify(SECRET, ID, TS + 1, BODY, EXPECTED));
        assert!(!verify(&new_secret(), ID, TS, BODY, EXPECTED));
        assert!(!verify(SECRET, ID, TS, BODY, ""));
        assert!(!verify(SECRET, ID, TS, BODY, "v1,not-base64!"));
        assert!(!verify(SECRET, ID, TS, BODY, "v2,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="));
        assert!(!verify("whsec_", ID, TS, BODY, EXPECTED));
    }

    #[test]
    fn verify_accepts_any_of_several_signatures() {
        let other = sign(&new_secret(), ID, TS, BODY).unwrap_or_default();
        let header = format!("v1a,AAAA {other} {EXPECTED}");
        assert!(verify(SECRET, ID, TS, BODY, &header));
        assert!(!verify(SECRET, ID, TS, BODY, &format!("v1a,AAAA {other}")));
    }

    #[test]
    fn invalid_secrets_are_errors() {
        assert!(matches!(sign("whsec_***", ID, TS, BODY), Err(SigningError::InvalidSecret(_))));
        assert!(matches!(sign("", ID, TS, BODY), Err(SigningError::InvalidSecret(_))));
    }

    #[test]
    fn generated_ids_and_secrets_have_the_expected_shape() {
        let id = new_message_id();
        assert_eq!(id.len(), 4 + 27);
        assert!(id.starts_with("msg_"));
        assert!(id[4..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(new_message_id(), id);

        let secret = new_secret();
        let key = decode_secret(&secret).unwrap_or_default();
        assert_eq!(key.len(), 24);
        assert!(secret.starts_with("whsec_"));
        assert_ne!(new_secret(), secret);
        let signature = sign(&secret, ID, TS, BODY).unwrap_or_default();
        assert!(verify(&secret, ID, TS, BODY, &signature));
    }
}
