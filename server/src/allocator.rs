//! What the server asks of its allocator. mimalloc (the default) keeps a
//! thread's freed pages until that thread next runs the allocator, and only
//! then returns them to the system after its purge delay. A shard or the
//! chat core that goes quiet after a burst (a login storm, a C1M ramp) would
//! keep the burst's transient memory for as long as it stays quiet, which
//! shows up as bytes per idle connection. Threads call
//! [`release_free_pages`] once they go quiet after a burst.
//!
//! Transparent huge pages stay off: a 2 MiB page of which a few records
//! are touched is mostly waste, and a one-host cluster runs dozens of
//! nodes. mimalloc is built without asking for them (its `no_thp`
//! feature, set in the workspace manifest), and the process refuses them
//! at start ([`refuse_transparent_huge_pages`]) for hosts whose policy is
//! `always` and for the system allocator. A cluster node holding 1,000
//! connections measured 6.1 MB of anonymous memory (4 MB of it huge pages)
//! with them and 2.5 MB without. Redis turns them off for the same reason
//! (`disable-thp`).

/// Returns this thread's free allocator pages to the system (a no-op with
/// the system allocator).
pub fn release_free_pages() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: mi_collect only walks and trims the calling thread's heap.
    unsafe {
        libmimalloc_sys::mi_collect(false)
    };
}

/// Stops the kernel from backing this process's memory with transparent
/// huge pages from now on. Call it first thing in `main`, before the
/// threads and arenas that would be touched sparsely. On a kernel without
/// the setting the process keeps the system's policy, which only costs
/// memory.
pub fn refuse_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE sets one flag on this process's address
    // space and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
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
    fn transparent_huge_pages_stay_off_once_refused() {
        refuse_transparent_huge_pages();
        // SAFETY: PR_GET_THP_DISABLE only reads that flag.
        let flag = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(flag, 1, "the kernel keeps the refusal for this process");
    }

    #[test]
    fn release_once_on_the_first_quiet_period_after_a_busy_one() {
        let mut quiet = QuietAfterBurst::default();
        let seen: Vec<bool> =
            [false, true, true, false, false, true, false].into_iter().map(|b| quiet.period(b)).collect();
        assert_eq!(seen, vec![false, false, false, true, false, false, true]);
    }
}
