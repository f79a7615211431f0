//! Client authentication: JWT verification with HS256 secrets and RS256 or
//! ES256 public keys, the room grants a token carries, revocation by user,
//! and minting tokens for development (`corecast-server token`).
//!
//! A token's `sub` is the user id and `exp` is required; `nbf` is checked
//! when present, both with a few seconds of leeway. Each configured key is
//! bound to one algorithm and a token is checked only with the key of the
//! algorithm its header names, so `alg: none` and algorithm confusion (an
//! RSA public key used as an HMAC secret) are refused. An optional `rooms`
//! claim lists the rooms the user may join: exact names, or prefixes ending
//! in `*`; without it every room is allowed. Revoking a user refuses every
//! token of that user issued (`iat`) at or before the revocation.

mod hs256;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::revocations::Revocations;

/// Longest user id accepted from a token's `sub`.
pub const MAX_USER_ID_LEN: usize = 128;
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 5;

/// The claims corecast reads from a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch (needed to survive a
    /// revocation of the user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
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
    /// Signature, format or time checks failed.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The header names an algorithm no configured key is for.
    #[error("tokens signed with {0:?} are not accepted")]
    AlgorithmNotAccepted(Algorithm),
    /// `sub` is empty or too long.
    #[error("token subject must be 1..={MAX_USER_ID_LEN} bytes")]
    BadSubject,
    /// The user's tokens issued up to a point in time were revoked.
    #[error("token revoked")]
    Revoked,
}

/// Why a verification key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("bad {alg:?} public key: {source}")]
pub struct KeyError {
    alg: Algorithm,
    source: jsonwebtoken::errors::Error,
}

/// Verifies tokens against the configured keys and the revocation list.
pub struct TokenVerifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    /// The HS256 key for the allocation-free path, when there is one.
    fast: Option<hs256::Hs256Key>,
    /// Read once per AUTH; never touched per message.
    revocations: Arc<Revocations>,
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl TokenVerifier {
    /// A verifier for HS256 tokens signed with `secret`.
    pub fn new(secret: &[u8]) -> TokenVerifier {
        TokenVerifier {
            keys: vec![(Algorithm::HS256, DecodingKey::from_secret(secret))],
            fast: Some(hs256::Hs256Key::new(secret)),
            revocations: Arc::default(),
        }
    }

    /// Checks tokens against `revocations` (instead of an empty list).
    pub fn with_revocations(mut self, revocations: Arc<Revocations>) -> TokenVerifier {
        self.revocations = revocations;
        self
    }

    /// The revocations this verifier checks.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// Also accepts RS256 tokens signed by the key whose public half is
    /// `pem`.
    pub fn with_rsa_public_key(mut self, pem: &[u8]) -> Result<TokenVerifier, KeyError> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|source| KeyError { alg: Algorithm::RS256, source })?;
        self.keys.push((Algorithm::RS256, key));
        Ok(self)
    }

    /// Also accepts ES256 tokens signed by the key whose public half is
    /// `pem`.
    pub fn with_ec_public_key(mut self, pem: &[u8]) -> Result<TokenVerifier, KeyError> {
        let key = DecodingKey::from_ec_pem(pem).map_err(|source| KeyError { alg: Algorithm::ES256, source })?;
        self.keys.push((Algorithm::ES256, key));
        Ok(self)
    }

    /// Checks the token and returns who it names and what it grants.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if let Some(checked) =
            self.fast.as_ref().and_then(|key| key.check(token, now_secs(), LEEWAY_SECS, MAX_USER_ID_LEN))
        {
            if self.revocations.is_revoked(&checked.user, checked.issued_at) {
                return Err(AuthError::Revoked);
            }
            return Ok(Identity { user: checked.user, device: Box::default(), rooms: checked.rooms });
        }
        self.verify_fully(token)
    }

    /// The full check, for tokens the fast path leaves alone (and to say
    /// why a token is refused).
    fn verify_fully(&self, token: &str) -> Result<Identity, AuthError> {
        // An unknown algorithm, "none" included, fails to parse here.
        let header = jsonwebtoken::decode_header(token)?;
        let Some((alg, key)) = self.keys.iter().find(|(alg, _)| *alg == header.alg) else {
            return Err(AuthError::AlgorithmNotAccepted(header.alg));
        };
        let mut validation = Validation::new(*alg);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)?.claims;
        if claims.sub.is_empty() || claims.sub.len() > MAX_USER_ID_LEN {
            return Err(AuthError::BadSubject);
        }
        if self.revocations.is_revoked(&claims.sub, claims.iat) {
            return Err(AuthError::Revoked);
        }
        Ok(Identity {
            user: claims.sub.into_boxed_str(),
            device: Box::default(),
            rooms: claims.rooms.map(|rooms| rooms.into_iter().map(String::into_boxed_str).collect()),
        })
    }
}

/// Signs an HS256 token for `user`, valid for `ttl_secs`, optionally limited
/// to `rooms`. Used by `corecast-server token` and the dev-mode start banner.
pub fn mint_token(secret: &[u8], user: &str, ttl_secs: u64, rooms: Option<Vec<String>>) -> anyhow::Result<String> {
    let now = now_secs();
    let claims = Claims { sub: user.to_string(), exp: now + ttl_secs, iat: Some(now), rooms };
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
    fn wrong_secret_garbage_and_alg_none_are_refused() {
        let token = mint_token(b"another-secret-0123456", "alice", 60, None).unwrap();
        let verifier = TokenVerifier::new(SECRET);
        assert!(verifier.verify(&token).is_err());
        assert!(verifier.verify("not.a.token").is_err());
        // {"alg":"none","typ":"JWT"} . {"sub":"alice","exp":9999999999} . (no signature)
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(verifier.verify(none).is_err());
    }

    #[test]
    fn empty_subject_is_refused() {
        let token = mint_token(SECRET, "", 60, None).unwrap();
        assert!(matches!(TokenVerifier::new(SECRET).verify(&token), Err(AuthError::BadSubject)));
    }

    #[test]
    fn revocation_refuses_tokens_issued_before_it() {
        let verifier = TokenVerifier::new(SECRET);
        let old = mint_token(SECRET, "alice", 60, None).unwrap();
        let revoked_at = now_secs();
        verifier.revocations().apply([("alice".to_string(), revoked_at)], revoked_at).unwrap();
        assert!(matches!(verifier.verify(&old), Err(AuthError::Revoked)));
        let now = now_secs();
        let later = Claims { sub: "alice".into(), exp: now + 60, iat: Some(revoked_at + 1), rooms: None };
        let fresh = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &later,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(verifier.verify(&fresh).is_ok());
        assert!(verifier.verify(&mint_token(SECRET, "bob", 60, None).unwrap()).is_ok());
    }
}
