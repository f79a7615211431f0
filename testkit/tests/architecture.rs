//! Keeps `docs/ARCHITECTURE.md` true as the code moves: every file its
//! concept table names must exist, the table must name every concept a
//! reader looks for, and the README must link to the document.

use std::path::{Path, PathBuf};

/// The concepts the table must cover (the start of a row's first cell).
const REQUIRED_CONCEPTS: &[&str] = &[
    "wire codec",
    "internal frames",
    "shard loop",
    "connection record",
    "outbound queue",
    "rooms",
    "interest table",
    "timing wheel",
    "auth",
    "limits",
    "link codec",
    "route table",
    "registry",
    "dispatch ranking",
    "dispatch answer",
    "router core",
    "sequencer",
    "chat release line",
    "store trait",
    "store backend: embedded",
    "store backend: Redis",
    "store backend: ScyllaDB",
    "WebSocket",
    "HTTP fallback",
    "bench scenarios",
];

const TABLE_HEADING: &str = "## Concepts and the file that owns each";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (concept, file) for each row of the concept table.
fn concept_rows(document: &str) -> Vec<(String, String)> {
    let table = document.split(TABLE_HEADING).nth(1).expect("the concept table's heading");
    table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // header and separator
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 2, "a concept row has a concept and a file: {row}");
            (cells[0].to_string(), cells[1].trim_matches('`').to_string())
        })
        .collect()
}

#[test]
fn every_file_in_the_concept_table_exists() {
    let document = std::fs::read_to_string(workspace().join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
    let rows = concept_rows(&document);
    assert!(!rows.is_empty(), "the concept table is empty");
    let missing: Vec<String> = rows
        .iter()
        .filter(|(_, file)| !workspace().join(file).is_file())
        .map(|(concept, file)| format!("{concept}: {file}"))
        .collect();
    assert!(missing.is_empty(), "docs/ARCHITECTURE.md names files that do not exist: {missing:#?}");
}

#[test]
fn the_concept_table_covers_every_concept() {
    let document = std::fs::read_to_string(workspace().join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
    let rows = concept_rows(&document);
    let absent: Vec<&str> = REQUIRED_CONCEPTS
        .iter()
        .copied()
        .filter(|concept| !rows.iter().any(|(name, _)| name.starts_with(concept)))
        .collect();
    assert!(absent.is_empty(), "docs/ARCHITECTURE.md has no row for {absent:?}");
}

#[test]
fn the_readme_links_to_the_architecture() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).expect("README.md");
    assert!(readme.contains("(docs/ARCHITECTURE.md)"), "README.md does not link docs/ARCHITECTURE.md");
    assert!(!readme.contains("../shared"), "README.md links outside the repository");
}
