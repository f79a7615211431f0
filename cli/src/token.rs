//! Client tokens: minting an HS256 JWT the way the server's own
//! `corecast-server token` does (claims `sub`, `exp`, `iat` and the
//! optional `rooms` grant), with the secret from `CORECAST_JWT_SECRET`, and
//! choosing the token a connection authenticates with.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::args::Global;

/// The environment variable holding the HS256 secret.
const SECRET_VAR: &str = "CORECAST_JWT_SECRET";
/// Lifetime of a token minted for `--user`.
const SESSION_TTL_SECS: u64 = 3600;

/// A token for `user`, valid for `ttl_secs`, granting `rooms` (every room
/// when `None`).
pub fn mint(user: &str, rooms: Option<&[String]>, ttl_secs: u64) -> Result<String> {
    let secret = std::env::var(SECRET_VAR).with_context(|| format!("{SECRET_VAR} is not set"))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut claims = serde_json::json!({ "sub": user, "exp": now + ttl_secs, "iat": now });
    if let Some(rooms) = rooms {
        claims["rooms"] = serde_json::json!(rooms);
    }
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))?;
    Ok(token)
}

/// The token to authenticate with: `--token`, or one minted for `--user`.
pub fn for_session(global: &Global) -> Result<String> {
    match (&global.token, &global.user) {
        (Some(token), _) => Ok(token.clone()),
        (None, Some(user)) => mint(user, None, SESSION_TTL_SECS),
        (None, None) => bail!("give --token TOKEN, or --user USER with {SECRET_VAR} set"),
    }
}
