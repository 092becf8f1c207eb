//! The signature of a delivery: HMAC-SHA256 with the subscription's secret over
//! `"{timestamp}.{body}"`, sent as `Webhook-Signature: v1=<hex>` beside `Webhook-Timestamp`
//! (Unix seconds) and `Webhook-Id` (the delivery id).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header holding the delivery id.
pub const ID_HEADER: &str = "Webhook-Id";
/// The header holding the Unix time (seconds) at which the attempt was signed.
pub const TIMESTAMP_HEADER: &str = "Webhook-Timestamp";
/// The header holding `v1=` and the hex HMAC-SHA256.
pub const SIGNATURE_HEADER: &str = "Webhook-Signature";
/// The header holding the event name.
pub const EVENT_HEADER: &str = "Webhook-Event";

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature header is not `v1=` followed by 64 hex digits.
    #[error("malformed {SIGNATURE_HEADER} header {0:?}: expected v1=<64 hex digits>")]
    Malformed(String),
    /// The HMAC does not match the body and timestamp.
    #[error("the signature does not match the body and timestamp")]
    Mismatch,
    /// The timestamp is further than the tolerance from now (a replay, or a skewed clock).
    #[error(
        "timestamp {timestamp} is {age} s away from now {now}: more than the {tolerance} s tolerated"
    )]
    Stale {
        /// The signed timestamp.
        timestamp: i64,
        /// The receiver's time.
        now: i64,
        /// How far apart, in seconds.
        age: i64,
        /// The tolerance, in seconds.
        tolerance: i64,
    },
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Webhook-Signature` value of `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Checks a delivery as a receiver should: the signature matches (compared in constant
/// time), and `timestamp` is within `tolerance_secs` of `now` (5 minutes is usual), which
/// refuses replays of an old delivery.
pub fn verify(
    secret: &str,
    timestamp: i64,
    signature: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let hex_part = signature
        .strip_prefix("v1=")
        .filter(|h| h.len() == 64)
        .ok_or_else(|| SignatureError::Malformed(signature.chars().take(80).collect()))?;
    let expected =
        hex::decode(hex_part).map_err(|_| SignatureError::Malformed(signature.to_owned()))?;
    mac(secret, timestamp, body)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)?;
    let age = (now - timestamp).abs();
    if age > tolerance_secs {
        return Err(SignatureError::Stale {
            timestamp,
            now,
            age,
            tolerance: tolerance_secs,
        });
    }
    Ok(())
}

/// A fresh secret: `whsec_` and 64 hex digits from the OS's random source.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let body = br#"{"event":"task.done"}"#;
        let signature = sign("s3cret", 1_700_000_000, body);
        assert_eq!(signature.len(), 67);
        assert_eq!(
            verify(
                "s3cret",
                1_700_000_000,
                &signature,
                body,
                1_700_000_100,
                300
            ),
            Ok(())
        );
        let other_body = br#"{"event":"task.failed"}"#;
        assert_eq!(
            verify(
                "s3cret",
                1_700_000_000,
                &signature,
                other_body,
                1_700_000_000,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("other", 1_700_000_000, &signature, body, 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                "s3cret",
                1_700_000_001,
                &signature,
                body,
                1_700_000_001,
                300
            ),
            Err(SignatureError::Mismatch),
            "the timestamp is signed"
        );
        assert!(matches!(
            verify(
                "s3cret",
                1_700_000_000,
                &signature,
                body,
                1_700_000_301,
                300
            ),
            Err(SignatureError::Stale { age: 301, .. })
        ));
        assert!(matches!(
            verify("s3cret", 1, "v1=zz", body, 1, 300),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn secrets_are_fresh() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 6 + 64);
    }
}
