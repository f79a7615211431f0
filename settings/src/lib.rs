//! What the server node and the router share at start: loading their
//! settings ([`load`]), their log output ([`logs`]) and the identity of the
//! build ([`build_info`]).
//!
//! Settings load the same way for both binaries: the struct's `Default`,
//! then a TOML file, then environment variables, then command-line flags,
//! later sources winning; the result is validated before anyone uses it
//! (`--check-config` prints it).
//!
//! The struct is the one source of truth. Its serde field names are the
//! keys of the file, of the flags and of the environment
//! (`<prefix><KEY>`): [`setting_keys`] reads them off the serialized
//! default, so no list of keys is kept by hand. A key the struct does not
//! have is refused in the file and the flags (the struct denies unknown
//! fields), and in the environment when the binary owns its prefix
//! ([`Settings::ENV_PREFIX_OWNED`]); a binary whose prefix other programs
//! share reads only its own keys from the environment. `<prefix>CONFIG`
//! names the file (a flag of the binary) and is never read as a setting.
//! An unknown key is named as written, with the closest known key as a
//! suggestion ([`SettingsError::UnknownKey`]).
#![warn(missing_docs)]

pub mod build_info;
pub mod logs;

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A source could not be read or parsed. (Not a `source()`: the
    /// message already holds figment's, and printing both repeats it.)
    #[error("configuration could not be loaded: {0}")]
    Load(Box<figment::Error>),
    /// A source names a key the settings do not have.
    #[error("unknown key '{key}' in {location}{}", .suggestion.as_ref().map(|s| format!("; did you mean '{s}'?")).unwrap_or_default())]
    UnknownKey {
        /// The key as written (`listenn`).
        key: String,
        /// Where it was written (`bad.toml TOML file`, `` `CORECAST_`
        /// environment variable(s)``).
        location: String,
        /// The known key closest to it, when one is close.
        suggestion: Option<String>,
    },
    /// A value is out of its allowed range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A binary's settings struct (`#[serde(default, deny_unknown_fields)]`).
pub trait Settings: Default + Serialize + DeserializeOwned {
    /// Environment variables `<ENV_PREFIX><KEY>` set the key `key`.
    const ENV_PREFIX: &'static str;
    /// Whether every variable under [`Settings::ENV_PREFIX`] is this
    /// binary's, so an unknown one is an error. False when other programs
    /// use variables under the same prefix.
    const ENV_PREFIX_OWNED: bool;

    /// Refuses values out of their allowed range or that do not go together.
    fn validate(&self) -> Result<(), SettingsError>;
}

/// The top-level keys of `S`: its serde field names, read off its default.
pub fn setting_keys<S: Settings>() -> Vec<String> {
    match serde_json::to_value(S::default()) {
        Ok(serde_json::Value::Object(fields)) => fields.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Merges `S`'s defaults, the TOML `file` (if any), the environment and
/// the `flags` (only the flags given, as a serializable struct whose absent
/// ones are skipped), in that order, and validates the result.
pub fn load<S: Settings>(file: Option<&Path>, flags: &impl Serialize) -> Result<S, SettingsError> {
    let mut figment = Figment::from(Serialized::defaults(S::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(SettingsError::Invalid(format!("config file {} does not exist", path.display())));
        }
        figment = figment.merge(Toml::file(path));
    }
    let env = Env::prefixed(S::ENV_PREFIX).ignore(&["config"]);
    let env = if S::ENV_PREFIX_OWNED {
        env
    } else {
        let keys = setting_keys::<S>();
        env.only(&keys.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let settings: S = figment.merge(env).merge(Serialized::defaults(flags)).extract().map_err(load_error)?;
    settings.validate()?;
    Ok(settings)
}

/// An unknown key as [`SettingsError::UnknownKey`] (figment would name it
/// with its profile, `default.listenn`, and list every known key); any
/// other failure as [`SettingsError::Load`].
fn load_error(error: figment::Error) -> SettingsError {
    let figment::error::Kind::UnknownField(field, known) = &error.kind else {
        return SettingsError::Load(Box::new(error));
    };
    let location = match &error.metadata {
        Some(md) => match &md.source {
            Some(source) => format!("{source} {}", md.name),
            None => md.name.to_string(),
        },
        None => "the configuration".to_string(),
    };
    SettingsError::UnknownKey { key: field.clone(), location, suggestion: closest(field, known).map(str::to_string) }
}

/// The known key most like `key` (Jaro-Winkler similarity, which favours a
/// shared start), if it is alike enough to be a likely typo.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(key, k), *k))
        .filter(|(similarity, _)| *similarity >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use figment::Jail;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Shared {
        port: u16,
        name: Option<String>,
    }

    impl Settings for Shared {
        const ENV_PREFIX: &'static str = "DEMO_";
        const ENV_PREFIX_OWNED: bool = false;
        fn validate(&self) -> Result<(), SettingsError> {
            match self.port {
                0 => Err(SettingsError::Invalid("port must be positive".into())),
                _ => Ok(()),
            }
        }
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Owned {
        port: u16,
    }

    impl Settings for Owned {
        const ENV_PREFIX: &'static str = "DEMO_";
        const ENV_PREFIX_OWNED: bool = true;
        fn validate(&self) -> Result<(), SettingsError> {
            Ok(())
        }
    }

    #[derive(Serialize)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    }

    #[test]
    fn keys_come_from_the_struct_including_unset_options() {
        assert_eq!(setting_keys::<Shared>(), ["name", "port"]);
    }

    #[test]
    fn the_closest_known_key_only_when_close() {
        let known = ["listen", "listen_ws", "max_connections", "jwt_secret"];
        assert_eq!(closest("listenn", &known), Some("listen"));
        assert_eq!(closest("max_conections", &known), Some("max_connections"));
        assert_eq!(closest("jwt-secret", &known), Some("jwt_secret"));
        assert_eq!(closest("colour", &known), None);
    }

    #[test]
    #[allow(clippy::result_large_err)] // Jail's closure returns figment's error type
    fn file_then_environment_then_flags_and_unknown_keys_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("demo.toml", "port = 7000\nname = \"file\"\n")?;
            jail.set_env("DEMO_PORT", "7100");
            jail.set_env("DEMO_OTHER_TOOL", "not ours");
            jail.set_env("DEMO_CONFIG", "demo.toml");
            let path = Path::new("demo.toml");
            let loaded: Shared = load(Some(path), &Flags { name: Some("flag".into()) }).unwrap();
            assert_eq!(loaded, Shared { port: 7100, name: Some("flag".into()) });
            let loaded: Shared = load(Some(path), &Flags { name: None }).unwrap();
            assert_eq!(loaded.name.as_deref(), Some("file"));

            let refused = load::<Owned>(None, &Flags { name: None }).unwrap_err().to_string();
            assert_eq!(refused, "unknown key 'other_tool' in `DEMO_` environment variable(s)");
            jail.clear_env();
            jail.set_env("DEMO_CONFIG", "demo.toml");
            jail.set_env("DEMO_PORT", "7200");
            assert_eq!(load::<Owned>(None, &Flags { name: None }).unwrap(), Owned { port: 7200 });
            jail.create_file("bad.toml", "port = 1\ncolour = \"red\"\n")?;
            let refused = load::<Shared>(Some(Path::new("bad.toml")), &Flags { name: None }).unwrap_err().to_string();
            assert_eq!(refused, "unknown key 'colour' in bad.toml TOML file");
            jail.create_file("typo.toml", "portt = 1\n")?;
            let refused = load::<Shared>(Some(Path::new("typo.toml")), &Flags { name: None }).unwrap_err().to_string();
            assert_eq!(refused, "unknown key 'portt' in typo.toml TOML file; did you mean 'port'?");
            jail.create_file("zero.toml", "port = 0\n")?;
            jail.set_env("DEMO_PORT", "0");
            let invalid = load::<Shared>(Some(Path::new("zero.toml")), &Flags { name: None }).unwrap_err();
            assert!(matches!(invalid, SettingsError::Invalid(_)));
            assert!(load::<Shared>(Some(Path::new("missing.toml")), &Flags { name: None }).is_err());
            Ok(())
        });
    }
}
