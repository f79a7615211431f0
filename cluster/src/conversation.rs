//! Conversation ids: one stable id per pair of users whoever sends, and one
//! per group. Direct ids carry the first user's length so ids stay
//! unambiguous whatever characters user ids contain; [`Conversation::parse`]
//! says what is wrong with an id that is not one of these.

/// PUSH/SEND kind of a direct conversation.
pub const KIND_DIRECT: u8 = 2;
/// PUSH/SEND kind of a group conversation.
pub const KIND_GROUP: u8 = 3;

/// A conversation id that does not parse, with what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadConversationId(String);

/// A parsed conversation id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    /// Between two users, `low <= high`.
    Direct {
        /// The lesser user id.
        low: String,
        /// The greater user id.
        high: String,
    },
    /// A group.
    Group {
        /// Group id.
        group: String,
    },
}

impl Conversation {
    /// The direct conversation of `a` and `b`, the same whichever sends.
    pub fn direct(a: &str, b: &str) -> Conversation {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        Conversation::Direct { low: low.to_string(), high: high.to_string() }
    }

    /// The conversation of group `group`.
    pub fn group(group: &str) -> Conversation {
        Conversation::Group { group: group.to_string() }
    }

    /// The wire id: `d:<len(low)>:<low><high>` or `g:<group>`.
    pub fn id(&self) -> String {
        match self {
            Conversation::Direct { low, high } => format!("d:{}:{low}{high}", low.len()),
            Conversation::Group { group } => format!("g:{group}"),
        }
    }

    /// Parses a wire id, saying what is wrong with a malformed one.
    pub fn parse(id: &str) -> Result<Conversation, BadConversationId> {
        let bad = |why: String| Err(BadConversationId(format!("conversation id '{id}': {why}")));
        if let Some(group) = id.strip_prefix("g:") {
            if group.is_empty() {
                return bad("no group id after 'g:'".into());
            }
            return Ok(Conversation::group(group));
        }
        let Some(rest) = id.strip_prefix("d:") else {
            return bad("must start with 'd:' (direct) or 'g:' (group)".into());
        };
        let Some((len, users)) = rest.split_once(':') else {
            return bad("a direct id is d:<length of the first user id>:<first user id><second user id>".into());
        };
        let Ok(len) = len.parse::<usize>() else {
            return bad(format!("'{len}' is not the length of the first user id"));
        };
        if len == 0 || len >= users.len() || !users.is_char_boundary(len) {
            return bad(format!("{len} bytes do not split '{users}' into two user ids"));
        }
        let (low, high) = users.split_at(len);
        if low > high {
            return bad(format!("'{low}' sorts after '{high}'; the lesser user id comes first"));
        }
        Ok(Conversation::Direct { low: low.to_string(), high: high.to_string() })
    }

    /// The PUSH kind of this conversation.
    pub fn kind(&self) -> u8 {
        match self {
            Conversation::Direct { .. } => KIND_DIRECT,
            Conversation::Group { .. } => KIND_GROUP,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_id_is_the_same_whoever_sends_and_parses_back() {
        let ab = Conversation::direct("alice", "bob");
        assert_eq!(ab, Conversation::direct("bob", "alice"));
        assert_eq!(ab.id(), "d:5:alicebob");
        assert_eq!(Conversation::parse(&ab.id()), Ok(ab));
    }

    #[test]
    fn ids_with_separators_stay_unambiguous() {
        let x = Conversation::direct("a:b", "c");
        let y = Conversation::direct("a", "b:c");
        assert_ne!(x.id(), y.id());
        assert_eq!(Conversation::parse(&x.id()), Ok(x));
        assert_eq!(Conversation::parse(&y.id()), Ok(y));
    }

    #[test]
    fn groups_and_garbage() {
        assert_eq!(Conversation::parse("g:team"), Ok(Conversation::group("team")));
        for (bad, why) in [
            ("", "must start with 'd:' (direct) or 'g:' (group)"),
            ("x:abc", "must start with 'd:' (direct) or 'g:' (group)"),
            ("g:", "no group id after 'g:'"),
            ("d:", "a direct id is d:<length of the first user id>"),
            ("d:alice:shop", "'alice' is not the length of the first user id"),
            ("d:x:ab", "'x' is not the length"),
            ("d:0:ab", "0 bytes do not split 'ab' into two user ids"),
            ("d:9:ab", "9 bytes do not split 'ab'"),
            ("d:1:ba", "'b' sorts after 'a'; the lesser user id comes first"),
        ] {
            let error = Conversation::parse(bad).unwrap_err().to_string();
            assert!(error.starts_with(&format!("conversation id '{bad}': {why}")), "{bad}: {error}");
        }
    }
}
