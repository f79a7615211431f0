//! Client authentication: HS256 JWT verification, the room grants a token
//! carries, and minting tokens for development (`corecast-server token`).
//!
//! A token's `sub` is the user id and `exp` is required. An optional `rooms`
//! claim lists the rooms the user may join: exact names, or prefixes ending
//! in `*`. Without the claim every room is allowed.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use serde::{Deserialize, Serialize};

/// Longest user id accepted from a token's `sub`.
pub const MAX_USER_ID_LEN: usize = 128;
/// Clock skew tolerated on `exp`, in seconds.
const LEEWAY_SECS: u64 = 5;

/// The claims corecast reads from a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Rooms the user may join; absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
}

/// What a verified token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub user: Box<str>,
    /// Device id the client gave in AUTH (empty: the default device).
    pub device: Box<str>,
    /// Room grants; `None` allows every room.
    pub rooms: Option<Box<[Box<str>]>>,
}

impl Identity {
    /// Whether this identity may join `room`.
    pub fn may_join(&self, room: &str) -> bool {
        match &self.rooms {
            None => true,
            Some(grants) => grants.iter().any(|grant| match grant.strip_suffix('*') {
                Some(prefix) => room.starts_with(prefix),
                None => &**grant == room,
            }),
        }
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Signature, format, algorithm or expiry check failed.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// `sub` is empty or too long.
    #[error("token subject must be 1..={MAX_USER_ID_LEN} bytes")]
    BadSubject,
}

/// Verifies tokens with one HS256 secret.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    /// A verifier for tokens signed with `secret`.
    pub fn new(secret: &[u8]) -> TokenVerifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = LEEWAY_SECS;
        TokenVerifier { key: DecodingKey::from_secret(secret), validation }
    }

    /// Checks the token and returns who it names and what it grants.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)?;
        let claims = data.claims;
        if claims.sub.is_empty() || claims.sub.len() > MAX_USER_ID_LEN {
            return Err(AuthError::BadSubject);
        }
        Ok(Identity {
            user: claims.sub.into_boxed_str(),
            device: Box::default(),
            rooms: claims.rooms.map(|rooms| rooms.into_iter().map(String::into_boxed_str).collect()),
        })
    }
}

/// Signs a token for `user`, valid for `ttl_secs`, optionally limited to
/// `rooms`. Used by `corecast-server token` and the dev-mode start banner.
pub fn mint_token(secret: &[u8], user: &str, ttl_secs: u64, rooms: Option<Vec<String>>) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = Claims { sub: user.to_string(), exp: now + ttl_secs, rooms };
    Ok(jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret-0123456789";

    #[test]
    fn minted_token_verifies_and_grants_prefixes() {
        let token = mint_token(SECRET, "alice", 60, Some(vec!["lobby".into(), "game-*".into()])).unwrap();
        let identity = TokenVerifier::new(SECRET).verify(&token).unwrap();
        assert_eq!(&*identity.user, "alice");
        assert!(identity.may_join("lobby"));
        assert!(identity.may_join("game-7"));
        assert!(!identity.may_join("lobby2"));
        assert!(!identity.may_join("admin"));
    }

    #[test]
    fn wrong_secret_and_garbage_are_refused() {
        let token = mint_token(b"another-secret-0123456", "alice", 60, None).unwrap();
        assert!(TokenVerifier::new(SECRET).verify(&token).is_err());
        assert!(TokenVerifier::new(SECRET).verify("not.a.token").is_err());
    }

    #[test]
    fn empty_subject_is_refused() {
        let token = mint_token(SECRET, "", 60, None).unwrap();
        assert!(matches!(TokenVerifier::new(SECRET).verify(&token), Err(AuthError::BadSubject)));
    }
}
