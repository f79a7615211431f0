//! Token security against the real server: RS256 and ES256 tokens with
//! configured public keys, `alg: none`, algorithm confusion, wrong keys and
//! `nbf` refused, and revocation by user through the admin API, kept
//! across a restart.

mod common;

use std::path::PathBuf;

use common::{free_port, DataDir, Reply, Server};
use corecast_proto::{ClientRequest, ErrorCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

fn key(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/keys").join(name)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

fn claims(user: &str) -> serde_json::Value {
    serde_json::json!({ "sub": user, "exp": now() + 600, "iat": now() })
}

/// A server that accepts HS256 (test secret), RS256 and ES256 tokens.
fn server_with_public_keys() -> (Server, DataDir) {
    let dir = DataDir::new();
    let config = dir.0.join("keys.toml");
    std::fs::write(
        &config,
        format!(
            "jwt_rsa_public_key_file = {:?}\njwt_ec_public_key_file = {:?}\n",
            key("rsa_public.pem"),
            key("ec_public.pem")
        ),
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    (server, dir)
}

fn expect_refused(server: &Server, token: &str) {
    let mut client = server.connect();
    let rid = client.send(0, &ClientRequest::Auth { token, device: "" });
    match client.recv() {
        Reply::Error { code, rid: r, .. } => assert_eq!((code, r), (ErrorCode::AuthFailed.as_u16(), rid)),
        other => panic!("expected ERROR auth_failed, got {other:?}"),
    }
}

#[test]
fn rs256_and_es256_tokens_are_accepted_with_configured_keys() {
    let (server, _dir) = server_with_public_keys();
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(key("rsa_private.pem")).unwrap()).unwrap();
    let ec = EncodingKey::from_ec_pem(&std::fs::read(key("ec_private.pem")).unwrap()).unwrap();
    for (alg, key, user) in [(Algorithm::RS256, &rsa, "rsa-user"), (Algorithm::ES256, &ec, "ec-user")] {
        let mut client = server.connect();
        assert_eq!(client.auth(&sign(alg, key, claims(user))).user, user);
    }
    // HS256 still works beside them.
    let (_client, ok) = server.user("hs-user");
    assert_eq!(ok.user, "hs-user");
}

#[test]
fn alg_none_confusion_wrong_key_and_nbf_are_refused() {
    let (server, _dir) = server_with_public_keys();
    // alg "none": header {"alg":"none","typ":"JWT"}, no signature.
    let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    let body = jsonwebtoken::encode(&Header::default(), &claims("mallory"), &EncodingKey::from_secret(b"x")).unwrap();
    let payload = body.split('.').nth(1).unwrap();
    expect_refused(&server, &format!("{header}.{payload}."));
    // Algorithm confusion: HS256 keyed with the server's RSA public key.
    let public_pem = std::fs::read(key("rsa_public.pem")).unwrap();
    expect_refused(&server, &sign(Algorithm::HS256, &EncodingKey::from_secret(&public_pem), claims("mallory")));
    // ES256 signed by the RSA key's owner is not an ES256 key: wrong key.
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(key("rsa_private.pem")).unwrap()).unwrap();
    expect_refused(&server, &sign(Algorithm::RS384, &rsa, claims("mallory")));
    // Not valid before an hour from now.
    let mut early = claims("early");
    early["nbf"] = serde_json::json!(now() + 3600);
    expect_refused(&server, &token_with(early));
}

fn token_with(claims: serde_json::Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(common::JWT_SECRET.as_bytes()), claims)
}

#[test]
fn revoking_a_user_kicks_its_connections_and_refuses_its_old_tokens() {
    let server = Server::start(&[]);
    let old_token = token_with(claims("alice"));
    let mut phone = server.connect();
    phone.auth(&old_token);
    let (mut bob, _) = server.user("bob");

    let reply = server.admin_post("/v1/admin/users/alice/revoke", b"");
    assert_eq!(reply["kicked"], 1);
    let frames = phone.recv_until_eof();
    assert!(
        matches!(frames.last(), Some(Reply::Close { code, .. }) if *code == ErrorCode::Kicked.as_u16()),
        "{frames:?}"
    );
    expect_refused(&server, &old_token);
    // A token issued after the revocation works; other users were untouched.
    let mut fresh = claims("alice");
    fresh["iat"] = serde_json::json!(reply["revoked_before"].as_u64().unwrap() + 1);
    let mut laptop = server.connect();
    assert_eq!(laptop.auth(&token_with(fresh)).user, "alice");
    bob.join("still-here");
}

#[test]
fn a_revocation_survives_a_restart_and_a_future_one_is_refused() {
    let data = DataDir::new();
    let mut server = Server::start_in(&data.0, free_port(), &[]);
    let old_token = token_with(claims("alice"));
    let reply = server.admin_post("/v1/admin/users/alice/revoke", b"");
    let revoked_before = reply["revoked_before"].as_u64().unwrap();

    // A router's time may run a little ahead, not an hour.
    let ahead = format!("http://{}/v1/admin/users/bob/revoke?before={}", server.control, now() + 3600);
    let refused = ureq::post(&ahead).header("Authorization", &format!("Bearer {}", common::ADMIN_KEY)).send(b"");
    assert!(matches!(refused, Err(ureq::Error::StatusCode(400))), "{refused:?}");

    server.terminate();
    let server = Server::start_in(&data.0, free_port(), &[]);
    expect_refused(&server, &old_token);
    assert_eq!(server.admin_get("/v1/admin/revocations"), serde_json::json!({ "alice": revoked_before }));
    let mut fresh = claims("alice");
    fresh["iat"] = serde_json::json!(revoked_before + 1);
    assert_eq!(server.connect().auth(&token_with(fresh)).user, "alice");
    server.user("bob");
}
