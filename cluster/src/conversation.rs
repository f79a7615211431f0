//! Conversation ids: one stable id per pair of users whoever sends, and one
//! per group. Direct ids carry the first user's length so ids stay
//! unambiguous whatever characters user ids contain.

/// PUSH/SEND kind of a direct conversation.
pub const KIND_DIRECT: u8 = 2;
/// PUSH/SEND kind of a group conversation.
pub const KIND_GROUP: u8 = 3;

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

    /// Parses a wire id.
    pub fn parse(id: &str) -> Option<Conversation> {
        if let Some(group) = id.strip_prefix("g:") {
            return (!group.is_empty()).then(|| Conversation::group(group));
        }
        let rest = id.strip_prefix("d:")?;
        let (len, users) = rest.split_once(':')?;
        let len: usize = len.parse().ok()?;
        if len == 0 || len >= users.len() || !users.is_char_boundary(len) {
            return None;
        }
        let (low, high) = users.split_at(len);
        (low <= high).then(|| Conversation::Direct { low: low.to_string(), high: high.to_string() })
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
        assert_eq!(Conversation::parse(&ab.id()), Some(ab));
    }

    #[test]
    fn ids_with_separators_stay_unambiguous() {
        let x = Conversation::direct("a:b", "c");
        let y = Conversation::direct("a", "b:c");
        assert_ne!(x.id(), y.id());
        assert_eq!(Conversation::parse(&x.id()), Some(x));
        assert_eq!(Conversation::parse(&y.id()), Some(y));
    }

    #[test]
    fn groups_and_garbage() {
        assert_eq!(Conversation::parse("g:team"), Some(Conversation::group("team")));
        for bad in ["", "g:", "d:", "d:x:ab", "d:0:ab", "d:9:ab", "d:1:ba", "x:abc"] {
            assert_eq!(Conversation::parse(bad), None, "{bad}");
        }
    }
}
