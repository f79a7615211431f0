//! What fails a run. Any connection that failed, was refused or was closed
//! by the server, in any scenario and any step, fails it, with the count by
//! reason; the C1M steps also fail on any broadcast or fan-out delivery
//! lost. The parent exits non-zero when a summary has problems.

use std::collections::BTreeMap;

use crate::summary::Summary;

fn by_reason(what: &str, reasons: &BTreeMap<String, u64>) -> Option<String> {
    let total: u64 = reasons.values().sum();
    (total > 0).then(|| {
        let list: Vec<String> = reasons.iter().map(|(reason, n)| format!("{n} {reason}")).collect();
        format!("{total} connections {what}: {}", list.join(", "))
    })
}

/// Connections that failed or were refused while set up, or were lost after.
pub fn connection_problems(summary: &Summary) -> Vec<String> {
    [by_reason("failed or refused", &summary.failed), by_reason("dropped", &summary.disconnected)]
        .into_iter()
        .flatten()
        .collect()
}

/// Deliveries that should have arrived and did not.
pub fn delivery_problems(summary: &Summary) -> Vec<String> {
    match summary.lost {
        Some(lost) if lost > 0 => {
            vec![format!("{} lost {lost} of {} deliveries", summary.scenario, opt(summary.expected))]
        }
        _ => Vec::new(),
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "?".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_run_has_no_problem() {
        let summary = Summary { lost: Some(0), ..Summary::default() };
        assert!(connection_problems(&summary).is_empty());
        assert!(delivery_problems(&summary).is_empty());
    }

    #[test]
    fn drops_are_counted_by_reason() {
        let summary = Summary {
            failed: [("refused: close 3001: this node is full".to_string(), 3)].into(),
            disconnected: [("close 4002: idle".to_string(), 5), ("closed by server".to_string(), 2)].into(),
            ..Summary::default()
        };
        let problems = connection_problems(&summary);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0], "3 connections failed or refused: 3 refused: close 3001: this node is full");
        assert_eq!(problems[1], "7 connections dropped: 5 close 4002: idle, 2 closed by server");
    }

    #[test]
    fn losses_name_the_step() {
        let summary = Summary { scenario: "fanout".into(), lost: Some(4), expected: Some(100), ..Summary::default() };
        assert_eq!(delivery_problems(&summary), vec!["fanout lost 4 of 100 deliveries".to_string()]);
    }
}
