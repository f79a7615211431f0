//! Sequence numbers for the conversations this core owns.
//!
//! `seq = epoch << 40 | counter`. The epoch comes from the store
//! ([`next_epoch`](corecast_storage::MessageStore::next_epoch)) each time the
//! core starts owning, so every seq handed out after a crash, a restart or a
//! change of owner is greater than every seq handed out before, with no
//! per-message coordination. Counters start at 1 in each epoch; gaps are
//! allowed.

use rustc_hash::FxHashMap;

/// Bits of the per-epoch counter.
pub const COUNTER_BITS: u32 = 40;

/// Hands out strictly increasing seqs per conversation.
pub struct Sequencer {
    epoch: u64,
    counters: FxHashMap<String, u64>,
}

impl Sequencer {
    /// A sequencer for `epoch` (must be below 2^24).
    pub fn new(epoch: u64) -> Sequencer {
        Sequencer { epoch, counters: FxHashMap::default() }
    }

    /// The epoch of every seq this sequencer hands out.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The next seq of `conv`, or `None` once this epoch's counter space for
    /// it is spent (2^40 messages; the owner must take a new epoch).
    pub fn next(&mut self, conv: &str) -> Option<u64> {
        let counter = match self.counters.get_mut(conv) {
            Some(counter) => counter,
            None => self.counters.entry(conv.to_string()).or_insert(0),
        };
        *counter += 1;
        (*counter < (1 << COUNTER_BITS)).then_some(self.epoch << COUNTER_BITS | *counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_increase_per_conversation_and_across_epochs() {
        let mut old = Sequencer::new(3);
        let a1 = old.next("a").unwrap();
        let a2 = old.next("a").unwrap();
        let b1 = old.next("b").unwrap();
        assert!(a2 > a1);
        assert_eq!(a1, b1);
        let mut new = Sequencer::new(4);
        assert!(new.next("a").unwrap() > a2);
    }
}
