//! Which router owns a conversation: rendezvous (highest random weight)
//! hashing of the conversation id over the live routers' ids. Every node and
//! router computes the same owner from the same router list, and when a
//! router joins or leaves only the conversations it gains or loses move.
//!
//! The hash is FxHash from `rustc-hash` 2, which is deterministic across
//! processes and machines (unlike std's randomly keyed SipHash), so nodes
//! and routers of the same build agree.

use std::hash::{Hash, Hasher};

use rustc_hash::FxHasher;

/// What a router core may assign sequence numbers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Everything: a single node, or a router alone in its cluster.
    All,
    /// Nothing yet: a router that has just joined and waits until every
    /// node and router has seen it.
    Nothing,
    /// The conversations that hash to `me` among `routers`.
    Share {
        /// This router's id.
        me: String,
        /// Every live router's id, this one included.
        routers: Vec<String>,
    },
}

impl Ownership {
    /// Whether the owner of this view assigns seqs for `conv`.
    pub fn owns(&self, conv: &str) -> bool {
        match self {
            Ownership::All => true,
            Ownership::Nothing => false,
            Ownership::Share { me, routers } => owner_of(conv, routers) == Some(me.as_str()),
        }
    }
}

fn weight(key: &str, router: &str) -> u64 {
    let mut hasher = FxHasher::default();
    key.hash(&mut hasher);
    router.hash(&mut hasher);
    // FxHash mixes weakly in its last step; a final avalanche (from
    // SplitMix64) spreads near-equal inputs over the whole range.
    let mut z = hasher.finish();
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The router among `routers` that owns `key`, or `None` when there is none.
pub fn owner_of<'a, S: AsRef<str>>(key: &str, routers: &'a [S]) -> Option<&'a str> {
    routers.iter().map(AsRef::as_ref).max_by_key(|router| (weight(key, router), *router))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_party_agrees_and_only_a_leavers_share_moves() {
        let three = ["r1", "r2", "r3"];
        let two = ["r1", "r3"];
        let keys: Vec<String> = (0..3000).map(|i| format!("d:5:user{i}other")).collect();
        let mut per_router = [0usize; 3];
        for key in &keys {
            let before = owner_of(key, &three).unwrap();
            let after = owner_of(key, &two).unwrap();
            if before != "r2" {
                assert_eq!(before, after, "{key} moved although its owner stayed");
            }
            per_router[three.iter().position(|r| *r == before).unwrap()] += 1;
        }
        // Roughly even: each router owns between a fifth and a half.
        assert!(per_router.iter().all(|&n| n > 600 && n < 1500), "{per_router:?}");
    }

    #[test]
    fn views_own_what_they_should() {
        let routers = vec!["a".to_string(), "b".to_string()];
        let a = Ownership::Share { me: "a".into(), routers: routers.clone() };
        let b = Ownership::Share { me: "b".into(), routers };
        for key in ["g:x", "g:y", "d:1:ab", "d:2:aabb"] {
            assert!(a.owns(key) ^ b.owns(key));
        }
        assert!(Ownership::All.owns("g:x"));
        assert!(!Ownership::Nothing.owns("g:x"));
        assert_eq!(owner_of::<&str>("g:x", &[]), None);
    }
}
