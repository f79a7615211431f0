//! Rate limits: a token bucket on the shard's coarse clock, used per
//! connection (PUBLISH and SEND frames and bytes) and per shard (new
//! connections per source address and in total). Buckets refill by whole
//! ticks, so a bucket costs 8 bytes and no timer.

use std::net::IpAddr;

use rustc_hash::FxHashMap;

/// A token bucket refilled at `per_sec` up to `burst`, on a tick clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenBucket {
    tokens: u32,
    last_tick: u32,
}

/// Rate and burst of one kind of bucket, converted to ticks.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    per_tick: f64,
    burst: u32,
}

impl Rate {
    /// `per_sec` sustained, `burst` at once, on ticks of `tick_ms`. A zero
    /// `per_sec` means unlimited.
    pub fn new(per_sec: u32, burst: u32, tick_ms: u32) -> Rate {
        let burst = if per_sec == 0 { 0 } else { burst.max(1) };
        Rate { per_tick: per_sec as f64 * tick_ms as f64 / 1000.0, burst }
    }

    /// Whether this rate limits anything.
    pub fn is_unlimited(&self) -> bool {
        self.per_tick == 0.0
    }

    /// A full bucket for this rate.
    pub fn full(&self, now_tick: u64) -> TokenBucket {
        TokenBucket { tokens: self.burst, last_tick: now_tick as u32 }
    }
}

impl TokenBucket {
    /// Adds the tokens earned since the last refill, up to the burst.
    fn refill(&mut self, rate: &Rate, now_tick: u64) {
        let now = now_tick as u32;
        let elapsed = now.wrapping_sub(self.last_tick);
        if elapsed > 0 {
            let refill = (elapsed as f64 * rate.per_tick).min(rate.burst as f64) as u32;
            if refill > 0 {
                self.tokens = self.tokens.saturating_add(refill).min(rate.burst);
                self.last_tick = now;
            }
        }
    }

    /// Whether `cost` tokens are there (after refilling), without taking them.
    pub fn has(&mut self, rate: &Rate, cost: u32, now_tick: u64) -> bool {
        if rate.is_unlimited() {
            return true;
        }
        self.refill(rate, now_tick);
        self.tokens >= cost
    }

    /// Takes `cost` tokens if there are enough; refills first.
    pub fn take(&mut self, rate: &Rate, cost: u32, now_tick: u64) -> bool {
        if rate.is_unlimited() {
            return true;
        }
        self.refill(rate, now_tick);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// Most source addresses tracked before the table is reset (bounds memory
/// under a flood from many addresses).
const MAX_TRACKED_SOURCES: usize = 65_536;

/// Admission of new connections on one shard: per source address and in
/// total.
pub struct ConnectLimiter {
    per_source: Rate,
    total: Rate,
    sources: FxHashMap<IpAddr, TokenBucket>,
    all: TokenBucket,
}

impl ConnectLimiter {
    /// A limiter with the given rates.
    pub fn new(per_source: Rate, total: Rate) -> ConnectLimiter {
        ConnectLimiter { per_source, total, sources: FxHashMap::default(), all: total.full(0) }
    }

    /// Whether a new connection from `source` may be admitted now; a refused
    /// connection is charged to neither bucket.
    pub fn admit(&mut self, source: IpAddr, now_tick: u64) -> bool {
        if !self.all.has(&self.total, 1, now_tick) {
            return false;
        }
        if !self.per_source.is_unlimited() {
            if self.sources.len() >= MAX_TRACKED_SOURCES && !self.sources.contains_key(&source) {
                self.sources.clear();
            }
            let per_source = self.per_source;
            let bucket = self.sources.entry(source).or_insert_with(|| per_source.full(now_tick));
            if !bucket.take(&per_source, 1, now_tick) {
                return false;
            }
        }
        self.all.take(&self.total, 1, now_tick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let rate = Rate::new(10, 5, 100); // 1 token per 100 ms tick
        let mut bucket = rate.full(0);
        assert_eq!((0..8).filter(|_| bucket.take(&rate, 1, 0)).count(), 5);
        assert!(!bucket.take(&rate, 1, 0));
        assert!(bucket.take(&rate, 1, 1));
        assert!(!bucket.take(&rate, 1, 1));
        // A long pause refills only up to the burst.
        assert_eq!((0..8).filter(|_| bucket.take(&rate, 1, 1000)).count(), 5);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let rate = Rate::new(0, 0, 100);
        let mut bucket = rate.full(0);
        assert!((0..10_000).all(|_| bucket.take(&rate, 1_000, 0)));
    }

    #[test]
    fn connect_limiter_is_per_source_and_total() {
        let mut limiter = ConnectLimiter::new(Rate::new(10, 2, 100), Rate::new(100, 3, 100));
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        assert!(limiter.admit(a, 0) && limiter.admit(a, 0));
        assert!(!limiter.admit(a, 0), "third from one source in a burst of 2");
        assert!(limiter.admit(b, 0), "another source still gets in");
        assert!(!limiter.admit(b, 0), "total burst of 3 spent");
    }
}
