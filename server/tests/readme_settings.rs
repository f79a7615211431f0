//! The README's settings table against the server's settings struct: every
//! key in the table is a setting, every setting is in the table, and where
//! the table gives a default as a literal (`` `30000` ``) it is the
//! struct's default. A default the table gives in words (none, generated,
//! 3 × heartbeat) must be one the node works out at start: unset in the
//! struct.

use corecast_server::config::Config;
use corecast_settings::setting_keys;

/// One README row: its keys and the default cell of each.
struct Row {
    keys: Vec<String>,
    defaults: Vec<String>,
}

fn settings_rows(readme: &str) -> Vec<Row> {
    let table = readme.split("| setting | default | meaning |").nth(1).expect("the README's settings table");
    table
        .lines()
        .skip(2) // the rest of the header line, and the separator
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let keys = cells[0].split([',', '/']).map(|k| k.trim().trim_matches('`').to_string()).collect::<Vec<_>>();
            let defaults = if keys.len() > 1 && cells[1].contains(" / ") {
                cells[1].split(" / ").map(str::to_string).collect()
            } else {
                vec![cells[1].to_string(); keys.len()]
            };
            Row { keys, defaults }
        })
        .collect()
}

/// The literal a default cell starts with, when it is one: `` `v` ``
/// alone or followed by an explanation in parentheses or after `=`.
fn literal(cell: &str) -> Option<&str> {
    let rest = cell.strip_prefix('`')?;
    let (value, after) = rest.split_once('`')?;
    (after.is_empty() || after.starts_with(" (") || after.starts_with(" =")).then_some(value)
}

/// A README literal as a TOML value: itself when it parses as one, else a string.
fn toml_value(literal: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {literal}"))
        .ok()
        .and_then(|mut table| table.remove("v"))
        .unwrap_or_else(|| toml::Value::String(literal.to_string()))
}

#[test]
fn the_readme_table_and_the_settings_struct_agree() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md");
    let rows = settings_rows(&readme);
    let defaults = toml::Table::try_from(Config::default()).expect("defaults as TOML");
    let keys = setting_keys::<Config>();
    let mut problems = Vec::new();

    for row in &rows {
        for (key, cell) in row.keys.iter().zip(&row.defaults) {
            if !keys.contains(key) {
                problems.push(format!("README names `{key}`, which is not a setting"));
                continue;
            }
            match (literal(cell), defaults.get(key)) {
                (Some(text), Some(value)) if &toml_value(text) != value => {
                    problems.push(format!("`{key}`: README says {text}, the default is {value}"))
                }
                (Some(text), None) => problems.push(format!("`{key}`: README says {text}, the struct leaves it unset")),
                (None, Some(value)) => {
                    problems.push(format!("`{key}`: README gives no literal default ({cell}), the struct has {value}"))
                }
                _ => {}
            }
        }
    }
    for key in &keys {
        if !rows.iter().any(|row| row.keys.contains(key)) {
            problems.push(format!("setting `{key}` is missing from the README table"));
        }
    }
    assert!(problems.is_empty(), "README settings table and server/src/config.rs disagree:\n{}", problems.join("\n"));
}
