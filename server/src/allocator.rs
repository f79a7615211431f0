//! What the server asks of its allocator. mimalloc (the default) keeps a
//! thread's freed pages until that thread next runs the allocator, and only
//! then returns them to the system after its purge delay. A shard or the
//! chat core that goes quiet after a burst (a login storm, a C1M ramp) would
//! keep the burst's transient memory for as long as it stays quiet, which
//! shows up as bytes per idle connection. Threads call
//! [`release_free_pages`] once they go quiet after a burst.

/// Returns this thread's free allocator pages to the system (a no-op with
/// the system allocator).
pub fn release_free_pages() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: mi_collect only walks and trims the calling thread's heap.
    unsafe {
        libmimalloc_sys::mi_collect(false)
    };
}

/// Whether a thread had a burst in the last period and is quiet now: the
/// moment to release its free pages, once per burst.
#[derive(Default)]
pub struct QuietAfterBurst {
    busy_before: bool,
}

impl QuietAfterBurst {
    /// Records one period; true when it is the first quiet one after a busy one.
    pub fn period(&mut self, busy: bool) -> bool {
        let quiet_now = self.busy_before && !busy;
        self.busy_before = busy;
        quiet_now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_once_on_the_first_quiet_period_after_a_busy_one() {
        let mut quiet = QuietAfterBurst::default();
        let seen: Vec<bool> =
            [false, true, true, false, false, true, false].into_iter().map(|b| quiet.period(b)).collect();
        assert_eq!(seen, vec![false, false, false, true, false, false, true]);
    }
}
