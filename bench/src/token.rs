//! Client tokens for the corecast target: HS256 JWTs with `sub` and `exp`,
//! minted by the harness itself from the server's secret (`--jwt-secret` or
//! `CORECAST_JWT_SECRET`), one user id per connection.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
}

/// Mints tokens with one key.
pub struct TokenMinter {
    key: EncodingKey,
    header: Header,
    exp: u64,
}

impl TokenMinter {
    /// A minter for `secret`; tokens expire `ttl_secs` from now.
    pub fn new(secret: &str, ttl_secs: u64) -> TokenMinter {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        TokenMinter {
            key: EncodingKey::from_secret(secret.as_bytes()),
            header: Header::new(Algorithm::HS256),
            exp: now + ttl_secs,
        }
    }

    /// A token for `user`.
    pub fn mint(&self, user: &str) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&self.header, &Claims { sub: user, exp: self.exp }, &self.key)
    }
}
