//! Deadlines on the shard's tick clock: authentication, idleness, slow
//! consumers, and how long a closing connection may take to go. One timing
//! wheel holds at most one live entry per connection (its earliest
//! deadline); each tick asks the connection for its real deadline.

use corecast_proto::ErrorCode;

use super::conn::{conn_id, Closing, NO_TICK};
use super::{Now, ShardCore};
use crate::shard::timer_wheel::TimerEntry;

impl ShardCore {
    /// Makes sure the connection is looked at no later than `due`. Only the
    /// earliest armed deadline stays live; later entries become stale.
    pub(super) fn arm_deadline(&mut self, key: usize, due: u64) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let due32 = due.min(NO_TICK as u64 - 1) as u32;
        if due32 < conn.timer_due {
            conn.timer_due = due32;
            self.wheel.insert(TimerEntry { key: key as u32, generation: conn.generation }, due32 as u64);
        }
    }

    /// A tick at `now`: deadlines that came due act, and room announcements
    /// that waited too long are answered.
    pub fn on_tick(&mut self, now: Now) {
        self.set_now(now);
        let mut due = Vec::new();
        self.wheel.take_due(self.now_tick, &mut due);
        for (entry, armed) in due {
            self.check_deadline(entry, armed);
        }
        self.expire_announcements();
        self.resend_interest();
        self.expire_pending_joins();
        self.expire_histories();
    }

    /// Acts on a connection whose armed deadline came up.
    fn check_deadline(&mut self, entry: TimerEntry, armed: u64) {
        let key = entry.key as usize;
        let tick = self.now_tick;
        let Some(conn) = self.conns.get_mut(key).filter(|c| c.generation == entry.generation) else { return };
        if conn.timer_due as u64 != armed {
            return; // superseded by an earlier deadline armed later
        }
        conn.timer_due = NO_TICK;
        let id = conn_id(self.id, conn.generation, entry.key);
        match conn.closing {
            Closing::Flushing { deadline } | Closing::Lingering { deadline } => {
                if tick < deadline as u64 {
                    return self.arm_deadline(key, deadline as u64);
                }
                // The peer did not take its CLOSE (or did not go) in time.
                return self.release(key);
            }
            Closing::No => {}
        }
        let mut due = if conn.identity.is_some() {
            conn.last_active_tick as u64 + self.settings.idle_ticks
        } else {
            conn.opened_tick as u64 + self.settings.auth_ticks
        };
        let slow_since = (conn.over_limit_since != NO_TICK).then_some(conn.over_limit_since as u64);
        if let Some(since) = slow_since {
            due = due.min(since + self.settings.slow_grace_ticks);
        }
        if tick < due {
            return self.arm_deadline(key, due);
        }
        let (code, reason) = if conn.identity.is_none() {
            (ErrorCode::NotAuthenticated, "authentication deadline passed")
        } else if slow_since.is_some_and(|since| tick >= since + self.settings.slow_grace_ticks) {
            (ErrorCode::SlowConsumer, "connection does not read fast enough")
        } else {
            (ErrorCode::IdleTimeout, "no frame received within the idle timeout")
        };
        let hint = self.config.reconnect_base_ms;
        self.begin_close(id, code, reason, hint);
    }
}
