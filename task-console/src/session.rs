//! Stateless signed sessions and the forms' anti-forgery tokens.
//!
//! A session cookie holds the tenant, a fingerprint of the API key signed in with, the expiry
//! and a random nonce, signed with HMAC-SHA256 under the console's secret: any node with the
//! same secret accepts it, and none keeps state. On every request the fingerprint must still
//! be one of the tenant's configured keys, so removing a key from the configuration ends its
//! sessions. The key itself is never in the cookie: the fingerprint is an HMAC of it under
//! the secret. A form's token is the HMAC of the session's nonce.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use task_core::ids::TenantId;
use task_http::ApiKey;

use crate::error::ConsoleError;

type HmacSha256 = Hmac<Sha256>;

/// The name of the session cookie.
pub(crate) const COOKIE: &str = "taskd_console";

/// A signed-in tenant, read from a valid cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The tenant whose data the session sees.
    pub tenant: TenantId,
    fingerprint: String,
    expires_ms: u64,
    nonce: String,
}

/// Issues and checks sessions and form tokens under one secret.
pub(crate) struct Sessions {
    mac: HmacSha256,
    lifetime_ms: u64,
    /// The fingerprint of every configured key, with its tenant.
    keys: Vec<(TenantId, String)>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("lifetime_ms", &self.lifetime_ms)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// A fresh random secret of 32 bytes.
pub(crate) fn random_secret() -> Vec<u8> {
    let mut secret = vec![0; 32];
    rand::rng().fill_bytes(&mut secret);
    secret
}

impl Sessions {
    /// Sessions signed with `secret` (at least 32 bytes), lasting `lifetime_ms`, for `keys`.
    pub fn new(secret: &[u8], lifetime_ms: u64, keys: &[ApiKey]) -> Result<Self, ConsoleError> {
        if secret.len() < 32 {
            return Err(ConsoleError::Secret(format!(
                "it is {} bytes long; use at least 32",
                secret.len()
            )));
        }
        let mac =
            HmacSha256::new_from_slice(secret).map_err(|e| ConsoleError::Secret(e.to_string()))?;
        let mut sessions = Self {
            mac,
            lifetime_ms,
            keys: Vec::new(),
        };
        sessions.keys = keys
            .iter()
            .map(|key| (key.tenant.clone(), sessions.fingerprint(&key.key)))
            .collect();
        Ok(sessions)
    }

    fn sign(&self, parts: &[&[u8]]) -> String {
        let mut mac = self.mac.clone();
        for part in parts {
            // Length-prefixed, so that no two different part lists sign the same bytes.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    fn fingerprint(&self, key: &str) -> String {
        self.sign(&[b"key", key.as_bytes()])[..32].to_owned()
    }

    /// A new session for `tenant`, signed in with `key`, and its cookie value.
    pub fn issue(&self, tenant: &TenantId, key: &str, now_ms: u64) -> (Session, String) {
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let session = Session {
            tenant: tenant.clone(),
            fingerprint: self.fingerprint(key),
            expires_ms: now_ms.saturating_add(self.lifetime_ms),
            nonce: hex::encode(nonce),
        };
        let value = format!("{}.{}", payload(&session), self.signature(&session));
        (session, value)
    }

    fn signature(&self, session: &Session) -> String {
        self.sign(&[b"session", payload(session).as_bytes()])
    }

    /// The session in a cookie value, if it is well signed, unexpired, and its key is still
    /// configured for its tenant.
    pub fn verify(&self, value: &str, now_ms: u64) -> Option<Session> {
        let mut parts = value.split('.');
        let (tenant, fingerprint, expires, nonce, signature) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if parts.next().is_some() {
            return None;
        }
        let session = Session {
            tenant: TenantId::new(tenant).ok()?,
            fingerprint: fingerprint.to_owned(),
            expires_ms: expires.parse().ok()?,
            nonce: nonce.to_owned(),
        };
        let expected = self.signature(&session);
        if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
            return None;
        }
        if session.expires_ms <= now_ms {
            return None;
        }
        let still_configured = self.keys.iter().fold(false, |found, (tenant, print)| {
            let same = bool::from(print.as_bytes().ct_eq(session.fingerprint.as_bytes()));
            found | (same && *tenant == session.tenant)
        });
        still_configured.then_some(session)
    }

    /// The anti-forgery token of `session`'s forms.
    pub fn csrf_token(&self, session: &Session) -> String {
        self.sign(&[b"csrf", session.nonce.as_bytes()])
    }

    /// Whether `token` is `session`'s anti-forgery token.
    pub fn csrf_matches(&self, session: &Session, token: &str) -> bool {
        bool::from(self.csrf_token(session).as_bytes().ct_eq(token.as_bytes()))
    }

    /// Seconds a session lasts.
    pub fn lifetime_secs(&self) -> u64 {
        self.lifetime_ms / 1000
    }
}

fn payload(session: &Session) -> String {
    format!(
        "{}.{}.{}.{}",
        session.tenant, session.fingerprint, session.expires_ms, session.nonce
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keys() -> Vec<ApiKey> {
        vec![
            ApiKey {
                key: "alpha-secret".into(),
                tenant: TenantId::new("a").unwrap(),
            },
            ApiKey {
                key: "beta-secret".into(),
                tenant: TenantId::new("b").unwrap(),
            },
        ]
    }

    #[test]
    fn a_cookie_is_valid_until_it_expires_and_only_as_signed() {
        let sessions = Sessions::new(&[7; 32], 60_000, &keys()).unwrap();
        let tenant = TenantId::new("a").unwrap();
        let (session, cookie) = sessions.issue(&tenant, "alpha-secret", 1_000);
        assert!(!cookie.contains("alpha-secret"));
        assert_eq!(sessions.verify(&cookie, 2_000), Some(session.clone()));
        assert_eq!(sessions.verify(&cookie, 61_000), None, "expired");
        let forged = cookie.replacen("a.", "b.", 1);
        assert_eq!(sessions.verify(&forged, 2_000), None, "tenant changed");
        let longer = cookie.replace(".61000.", ".99999999.");
        assert_eq!(sessions.verify(&longer, 2_000), None, "expiry changed");
        let other = Sessions::new(&[8; 32], 60_000, &keys()).unwrap();
        assert_eq!(other.verify(&cookie, 2_000), None, "another secret");
        assert!(sessions.csrf_matches(&session, &sessions.csrf_token(&session)));
        assert!(!sessions.csrf_matches(&session, ""));
    }

    #[test]
    fn removing_a_key_ends_its_sessions_and_keys_do_not_cross_tenants() {
        let sessions = Sessions::new(&[7; 32], 60_000, &keys()).unwrap();
        let (_, cookie) = sessions.issue(&TenantId::new("a").unwrap(), "alpha-secret", 0);
        let fewer = Sessions::new(&[7; 32], 60_000, &keys()[1..]).unwrap();
        assert_eq!(fewer.verify(&cookie, 1), None);
        let (_, crossed) = sessions.issue(&TenantId::new("b").unwrap(), "alpha-secret", 0);
        assert_eq!(sessions.verify(&crossed, 1), None);
        assert!(Sessions::new(&[7; 16], 1, &keys()).is_err());
    }
}
