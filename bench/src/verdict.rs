//! What fails a run. Any connection that failed, was refused or was closed
//! by the server, in any scenario and any step, fails it, with the count by
//! reason; the C1M steps also fail on any broadcast or fan-out delivery
//! lost. Runs in stream rooms (`fanout --history`, `recovery-storm`) also
//! fail on any delivery lost, message missed or repeated, stream position
//! out of line, server error, and for the storm any member that did not
//! rejoin, was not recovered or did not catch up. The parent exits
//! non-zero when a summary has problems.

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

/// What a run in stream rooms got wrong beyond connections and losses.
pub fn stream_problems(summary: &Summary) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |n: Option<u64>, what: &str| {
        if let Some(n) = n.filter(|&n| n > 0) {
            problems.push(format!("{n} {what}"));
        }
    };
    check(summary.seq_gaps, "messages missing between those a member received");
    check(summary.duplicates, "messages a member received twice or out of order");
    check(summary.position_gaps, "stream positions skipped");
    check(summary.position_duplicates, "stream positions seen twice or out of order");
    check(summary.epoch_changes, "epoch changes seen by members (history lost)");
    check(summary.unpositioned, "PUSH or JOINED frames without a stream position");
    if let Some(members) = summary.storm_members {
        let short = |n: Option<u64>| members.saturating_sub(n.unwrap_or(0));
        check(Some(short(summary.rejoined)), &format!("of {members} members never got JOINED back"));
        let not_recovered = summary.rejoined.unwrap_or(0).saturating_sub(summary.recovered.unwrap_or(0));
        check(Some(not_recovered), "rejoins answered recovered = 0");
        check(Some(short(summary.caught_up)), &format!("of {members} members had not caught up when publishing ended"));
    }
    let errors: u64 = summary.server_errors.values().sum();
    if errors > 0 {
        let list: Vec<String> = summary.server_errors.iter().map(|(m, n)| format!("{n} {m}")).collect();
        problems.push(format!("{errors} server errors: {}", list.join(", ")));
    }
    problems
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
    fn stream_runs_fail_on_positions_and_storm_members_left_behind() {
        let clean = Summary {
            seq_gaps: Some(0),
            position_gaps: Some(0),
            storm_members: Some(10),
            rejoined: Some(10),
            recovered: Some(10),
            caught_up: Some(10),
            ..Summary::default()
        };
        assert!(stream_problems(&clean).is_empty(), "{:?}", stream_problems(&clean));
        let summary = Summary {
            position_gaps: Some(3),
            duplicates: Some(1),
            rejoined: Some(9),
            recovered: Some(8),
            caught_up: Some(7),
            server_errors: [("error 5001: not found".to_string(), 2)].into(),
            ..clean
        };
        assert_eq!(
            stream_problems(&summary),
            [
                "1 messages a member received twice or out of order",
                "3 stream positions skipped",
                "1 of 10 members never got JOINED back",
                "1 rejoins answered recovered = 0",
                "3 of 10 members had not caught up when publishing ended",
                "2 server errors: 2 error 5001: not found",
            ]
        );
    }

    #[test]
    fn losses_name_the_step() {
        let summary = Summary { scenario: "fanout".into(), lost: Some(4), expected: Some(100), ..Summary::default() };
        assert_eq!(delivery_problems(&summary), vec!["fanout lost 4 of 100 deliveries".to_string()]);
    }
}
