//! A config file with an unknown key: `--check-config` exits non-zero with
//! one line naming the key as written and the closest known key, not
//! figment's profile-prefixed key and the list of every known one.

use std::process::Command;

const SERVER: &str = env!("CARGO_BIN_EXE_corecast-server");

#[test]
fn an_unknown_key_is_named_with_the_closest_known_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "listenn = \"127.0.0.1:7100\"\n").unwrap();
    let out = Command::new(SERVER)
        .args(["--config", "bad.toml", "--check-config"])
        .current_dir(dir.path())
        .env_remove("CORECAST_CONFIG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a bad config passed the check");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim_end(), "Error: unknown key 'listenn' in bad.toml TOML file; did you mean 'listen'?");
}
