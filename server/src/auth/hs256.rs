//! The fast path of AUTH: an HS256 token checked with no heap allocation
//! but the user id it returns. The header and claims are base64-decoded
//! into stack buffers and read as borrowed JSON; the HMAC key is set up once
//! and cloned per token. Anything out of the ordinary (another algorithm,
//! a claim this path does not know, an oversized part, any failure) is
//! left to `jsonwebtoken`, which gives the answer and the error message,
//! so this path accepts exactly the tokens the full check accepts, only
//! cheaper. Written by hand because `jsonwebtoken` builds a validation
//! set, two header copies and an owned claims tree for every token: the
//! admission cost this server cannot afford at a million connections.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Largest decoded header the fast path reads.
const MAX_HEADER: usize = 128;
/// Largest decoded claims the fast path reads.
const MAX_CLAIMS: usize = 1024;

/// An HS256 key, keyed once.
#[derive(Clone)]
pub struct Hs256Key(Hmac<Sha256>);

#[derive(Deserialize)]
struct Header<'a> {
    alg: &'a str,
    #[serde(default, rename = "typ")]
    _typ: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default, borrow)]
    rooms: Option<Vec<&'a str>>,
}

/// What a token checked on the fast path says.
pub struct Checked {
    /// The user id.
    pub user: Box<str>,
    /// `iat`, for the revocation check.
    pub issued_at: Option<u64>,
    /// Room grants.
    pub rooms: Option<Box<[Box<str>]>>,
}

impl Hs256Key {
    /// The key for `secret`.
    pub fn new(secret: &[u8]) -> Hs256Key {
        // HMAC takes a key of any length.
        Hs256Key(Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC accepts any key")))
    }

    /// Checks `token` at `now` (seconds) with `leeway`. `None`: not
    /// decided here (the caller runs the full check).
    pub fn check(&self, token: &str, now: u64, leeway: u64, max_user_len: usize) -> Option<Checked> {
        let mut parts = token.split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let mut buf = [0u8; MAX_HEADER];
        let header = decode(header, &mut buf)?;
        let header: Header<'_> = serde_json::from_slice(header).ok()?;
        if header.alg != "HS256" {
            return None;
        }
        let mut sig = [0u8; 48];
        let sig = decode(signature, &mut sig)?;
        let mut mac = self.0.clone();
        mac.update(&token.as_bytes()[..token.len() - signature.len() - 1]);
        mac.verify_slice(sig).ok()?;
        let mut buf = [0u8; MAX_CLAIMS];
        let claims = decode(claims, &mut buf)?;
        let claims: Claims<'_> = serde_json::from_slice(claims).ok()?;
        if claims.exp.saturating_add(leeway) < now || claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return None;
        }
        if claims.sub.is_empty() || claims.sub.len() > max_user_len {
            return None;
        }
        Some(Checked {
            user: claims.sub.into(),
            issued_at: claims.iat,
            rooms: claims.rooms.map(|rooms| rooms.into_iter().map(Box::from).collect()),
        })
    }
}

/// Base64url (no padding) into `buf`; `None` when it does not fit or is
/// not base64url.
fn decode<'b>(part: &str, buf: &'b mut [u8]) -> Option<&'b [u8]> {
    if part.len() / 4 * 3 + 3 > buf.len() {
        return None;
    }
    let n = URL_SAFE_NO_PAD.decode_slice(part, buf).ok()?;
    Some(&buf[..n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header as JwtHeader};

    const SECRET: &[u8] = b"fast-path-secret-0123456789";

    fn token(claims: serde_json::Value) -> String {
        encode(&JwtHeader::new(jsonwebtoken::Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    /// The full check's verdict (what jsonwebtoken decides).
    fn full(token: &str) -> bool {
        crate::auth::TokenVerifier::new(SECRET).verify_fully(token).is_ok()
    }

    #[test]
    fn the_fast_path_accepts_exactly_what_the_full_check_accepts() {
        let now = crate::auth::now_secs();
        let cases = [
            serde_json::json!({"sub": "alice", "exp": now + 60}),
            serde_json::json!({"sub": "alice", "exp": now + 60, "iat": now, "rooms": ["lobby", "game-*"]}),
            serde_json::json!({"sub": "alice", "exp": now - 3600}),
            serde_json::json!({"sub": "alice", "exp": now + 60, "nbf": now + 3600}),
            serde_json::json!({"sub": "", "exp": now + 60}),
            serde_json::json!({"sub": "x".repeat(200), "exp": now + 60}),
            serde_json::json!({"sub": "alice", "exp": now + 60, "aud": "somewhere"}),
            serde_json::json!({"sub": "alice"}),
            serde_json::json!({"sub": 7, "exp": now + 60}),
        ];
        let key = Hs256Key::new(SECRET);
        for claims in cases {
            let token = token(claims.clone());
            let fast = key.check(&token, now, 5, crate::auth::MAX_USER_ID_LEN);
            if let Some(checked) = &fast {
                assert!(full(&token), "fast path accepted what the full check refuses: {claims}");
                assert_eq!(&*checked.user, claims["sub"].as_str().unwrap());
            }
        }
        let plain = token(serde_json::json!({"sub": "alice", "exp": now + 60}));
        assert!(key.check(&plain, now, 5, 128).is_some(), "an ordinary token takes the fast path");
    }

    #[test]
    fn a_tampered_or_foreign_token_is_left_to_the_full_check() {
        let now = crate::auth::now_secs();
        let key = Hs256Key::new(SECRET);
        let good = token(serde_json::json!({"sub": "alice", "exp": now + 60}));
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"mallory","exp":99999999999}"#);
        parts[1] = &forged;
        assert!(key.check(&parts.join("."), now, 5, 128).is_none());
        let other = Hs256Key::new(b"another-secret-0123456789");
        assert!(other.check(&good, now, 5, 128).is_none());
        assert!(key.check("a.b", now, 5, 128).is_none());
    }
}
