//! The live-room demo served by the node: the page and the client module,
//! where the page connects, demo tokens only where allowed, the JavaScript
//! client against the real server under node (`clients/js/test/live.mjs`),
//! and the page itself in headless Chromium: two users in one `demo-*` room
//! see each other's messages and both in the members list, and a page whose
//! WebSocket is cut while the other publishes recovers every message once,
//! in order (the browser test in `clients/js/test/browser.mjs`, driven by
//! playwright-core; its screenshot is kept in `target/browser-test/demo.png`).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Server;

fn get(server: &Server, path: &str) -> (u16, String, String) {
    let mut response = ureq::get(&format!("http://{}{}", server.web, path)).call().expect("GET");
    let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (response.status().as_u16(), kind, response.body_mut().read_to_string().unwrap())
}

fn mint(server: &Server, name: &str) -> Result<serde_json::Value, u16> {
    match ureq::post(&format!("http://{}/demo/token", server.web))
        .header("Content-Type", "application/json")
        .send(format!("{{\"name\":\"{name}\"}}"))
    {
        Ok(mut response) => Ok(serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()),
        Err(ureq::Error::StatusCode(code)) => Err(code),
        Err(e) => panic!("POST /demo/token: {e}"),
    }
}

#[test]
fn the_page_the_module_and_the_config_are_served() {
    let server = Server::start(&[]);
    let (status, kind, page) = get(&server, "/demo");
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(page.contains("/corecast.js"), "the page loads the client module");
    let (status, kind, icon) = get(&server, "/favicon.ico");
    assert_eq!(status, 200);
    assert_eq!(kind, "image/svg+xml");
    assert!(icon.starts_with("<svg"), "{icon}");
    let (status, kind, module) = get(&server, "/corecast.js");
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/javascript"), "{kind}");
    assert!(module.contains("export"), "an ES module");
    let (_, _, config) = get(&server, "/demo/config");
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["ws_url"], format!("ws://127.0.0.1:{}/ws", server.ws.port()));
}

#[test]
fn demo_tokens_only_where_allowed_and_they_authenticate() {
    let production = Server::start(&[]);
    let refused = ureq::post(&format!("http://{}/demo/token", production.web))
        .config()
        .http_status_as_error(false)
        .build()
        .header("Content-Type", "application/json")
        .send("{\"name\":\"alice\"}")
        .unwrap();
    assert_eq!(refused.status(), 404);
    let why: serde_json::Value = serde_json::from_str(&refused.into_body().read_to_string().unwrap()).unwrap();
    let why = why["error"].as_str().unwrap();
    assert!(why.contains("demo_tokens = true") && why.contains("CORECAST_DEMO_TOKENS=true"), "{why}");
    assert!(why.contains("development only"), "{why}");

    let demo = Server::start(&["--demo-tokens", "true"]);
    assert_eq!(mint(&demo, "no spaces allowed").unwrap_err(), 400);
    let minted = mint(&demo, "alice").unwrap();
    assert_eq!(minted["user"], "alice");
    let mut client = demo.connect();
    assert_eq!(client.auth(minted["token"].as_str().unwrap()).user, "alice");
}

/// Whether node and the client's npm packages are here; says why not.
fn node_tools() -> Result<PathBuf, String> {
    let js = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/js");
    if Command::new("node").arg("--version").output().is_err() {
        return Err("no node (apt-get install -y nodejs npm)".into());
    }
    if !js.join("node_modules/ws").exists() || !js.join("node_modules/playwright-core").exists() {
        return Err("the client's npm packages are not installed (cd clients/js && npm ci)".into());
    }
    Ok(js)
}

/// The tools, or a failure of the test naming what is missing: a test
/// that needs them never passes without them.
fn require<T>(test: &str, tools: Result<T, String>) -> T {
    tools.unwrap_or_else(|why| panic!("{test} cannot run: missing part: {why}; .ci/run installs everything"))
}

#[test]
fn the_javascript_client_against_the_real_server() {
    let js = require("client live test", node_tools());
    let server = Server::start(&["--demo-tokens", "true"]);
    let output = Command::new("node")
        .arg(js.join("test/live.mjs"))
        .env("CORECAST_WS_URL", format!("ws://{}/ws", server.ws))
        .env("CORECAST_WEB_URL", format!("http://{}", server.web))
        .env("CORECAST_DISPATCH_URL", format!("http://{}/v1/dispatch", server.control))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "client live test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("live test: ok"), "{stdout}");
}

/// What the browser test needs, or why it cannot run here.
fn browser_tools() -> Result<(PathBuf, String), String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        return Err(format!("no Chromium at {chromium} (apt-get install -y chromium)"));
    }
    Ok((node_tools()?, chromium))
}

#[test]
fn two_users_chat_in_the_live_room_page_in_a_real_browser() {
    let (js, chromium) = require("browser test", browser_tools());
    let server = Server::start(&["--demo-tokens", "true"]);
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/browser-test");
    std::fs::create_dir_all(&shots).unwrap();
    let screenshot = shots.join("demo.png");
    let _ = std::fs::remove_file(&screenshot);
    let output = Command::new("node")
        .arg(js.join("test/browser.mjs"))
        .env("CORECAST_WEB_URL", format!("http://{}", server.web))
        .env("CORECAST_SCREENSHOT", &screenshot)
        .env("CHROMIUM", chromium)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "browser test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("browser test: ok"), "{stdout}");
    assert!(std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 1000), "screenshot saved");
}
