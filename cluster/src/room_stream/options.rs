//! Room options by name pattern: the `[[rooms]]` rules of both binaries'
//! settings, compiled once. The first rule whose glob matches a room's name
//! gives its options; a room that matches none behaves as a plain room (no
//! history, no presence) at a plain room's cost. The globs are the `glob`
//! crate's patterns, matched without path rules (`*` matches `/` too): a
//! small matcher, where a regex-based one would add a regex engine to every
//! node for one-line patterns.

use std::sync::Arc;

use glob::Pattern;
use serde::{Deserialize, Serialize};

/// One `[[rooms]]` rule as written in the settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomRule {
    /// Glob over room names (`*` any run of characters, `?` one, `[..]` a
    /// class), e.g. `live-*`.
    pub pattern: String,
    /// Messages kept per room for recovery and HISTORY; 0 keeps none (the
    /// room has no stream positions).
    #[serde(default)]
    pub history_size: u32,
    /// Messages older than this are dropped from the history; 0 keeps them
    /// until `history_size` or the budget pushes them out.
    #[serde(default)]
    pub history_ttl_ms: u64,
    /// Who is in the room can be asked (PRESENCE, admin API).
    #[serde(default)]
    pub presence: bool,
    /// Members get a PUSH (kind 5) when a user's first connection joins or
    /// last one leaves. Needs `presence`.
    #[serde(default)]
    pub join_leave_events: bool,
}

/// What a rule gives the rooms it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoomOptions {
    /// Messages kept per room; 0: no stream.
    pub history_size: u32,
    /// Age limit of kept messages in ms; 0: none.
    pub history_ttl_ms: u64,
    /// Presence is kept.
    pub presence: bool,
    /// Join and leave events are pushed.
    pub join_leave_events: bool,
}

impl RoomOptions {
    /// Whether messages get stream positions and go through the owner.
    pub fn has_stream(&self) -> bool {
        self.history_size > 0
    }

    /// Whether the room's owner must hear of joins and leaves.
    pub fn has_presence(&self) -> bool {
        self.presence
    }
}

/// A rule the settings cannot use.
#[derive(Debug, thiserror::Error)]
pub enum RoomRuleError {
    /// The glob does not parse.
    #[error("rooms rule {index}: pattern {pattern:?}: {reason}")]
    BadPattern {
        /// Position in the list, from 0.
        index: usize,
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// Join and leave events without presence.
    #[error("rooms rule {index} ({pattern:?}): join_leave_events needs presence = true")]
    EventsWithoutPresence {
        /// Position in the list, from 0.
        index: usize,
        /// The pattern.
        pattern: String,
    },
}

/// The compiled rules, cheap to clone and share between threads.
#[derive(Debug, Clone, Default)]
pub struct RoomPolicy {
    rules: Arc<[(Pattern, RoomOptions)]>,
}

impl RoomPolicy {
    /// Compiles the rules in order.
    pub fn new(rules: &[RoomRule]) -> Result<RoomPolicy, RoomRuleError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            if rule.join_leave_events && !rule.presence {
                return Err(RoomRuleError::EventsWithoutPresence { index, pattern: rule.pattern.clone() });
            }
            let glob = Pattern::new(&rule.pattern).map_err(|e| RoomRuleError::BadPattern {
                index,
                pattern: rule.pattern.clone(),
                reason: e.msg.to_string(),
            })?;
            let options = RoomOptions {
                history_size: rule.history_size,
                history_ttl_ms: rule.history_ttl_ms,
                presence: rule.presence,
                join_leave_events: rule.join_leave_events,
            };
            compiled.push((glob, options));
        }
        Ok(RoomPolicy { rules: compiled.into() })
    }

    /// The options of `room`: those of the first matching rule, or `None`
    /// for a plain room.
    pub fn options_for(&self, room: &str) -> Option<RoomOptions> {
        self.rules.iter().find(|(glob, _)| glob.matches(room)).map(|(_, options)| *options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, history_size: u32, presence: bool) -> RoomRule {
        RoomRule { pattern: pattern.into(), history_size, history_ttl_ms: 0, presence, join_leave_events: false }
    }

    #[test]
    fn first_matching_rule_wins_and_others_are_plain() {
        let policy = RoomPolicy::new(&[rule("live-vip-*", 10, true), rule("live-*", 100, false)]).unwrap();
        assert_eq!(policy.options_for("live-vip-1").unwrap().history_size, 10);
        assert!(policy.options_for("live-vip-1").unwrap().presence);
        assert_eq!(policy.options_for("live-7").unwrap().history_size, 100);
        assert_eq!(policy.options_for("lobby"), None);
    }

    #[test]
    fn globs_match_any_character_one_character_and_classes() {
        let policy =
            RoomPolicy::new(&[rule("live-*", 1, false), rule("chat-?", 2, false), rule("team-[ab]*", 3, false)])
                .unwrap();
        let size = |room: &str| policy.options_for(room).map(|options| options.history_size);
        assert_eq!(size("live-"), Some(1));
        assert_eq!(size("live-eu/stage.main"), Some(1), "* crosses / and dots: room names are not paths");
        assert_eq!(size("chat-7"), Some(2));
        assert_eq!(size("chat-77"), None);
        assert_eq!(size("team-a1"), Some(3));
        assert_eq!(size("team-c1"), None);
        assert_eq!(size("Live-1"), None, "case matters");
    }

    #[test]
    fn bad_rules_are_refused_with_their_index() {
        let err = RoomPolicy::new(&[rule("ok", 1, false), rule("live-[", 1, false)]).unwrap_err();
        assert!(err.to_string().contains("rooms rule 1"), "{err}");
        let mut events = rule("x", 1, false);
        events.join_leave_events = true;
        assert!(matches!(RoomPolicy::new(&[events]), Err(RoomRuleError::EventsWithoutPresence { index: 0, .. })));
    }
}
