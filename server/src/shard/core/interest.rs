//! This shard's side of room interest. When a room gets its first member
//! here, every other shard (and in a cluster the uplink, for the routers)
//! is told, and the JOIN is answered once all have acknowledged, so a
//! message published anywhere after the OK reaches the new member. Later
//! joiners on this shard wait for the same announcement; the connection's
//! later frames wait with it. The bookkeeping, with its bounded wait, is
//! the cluster crate's `Announcements`, the same one the uplink uses for
//! the routers: a shard that does not answer in time delays a first JOIN by
//! that long, counted and logged, instead of forever.
//!
//! An announcement that finds a peer's inbox full is not lost: the peer
//! would otherwise never forward this room's messages here. It is kept and
//! sent again every tick (without a JOIN waiting on it) for as long as the
//! room has members here.

use std::rc::Rc;

use corecast_cluster::interest::{Announcements, Done};
use corecast_proto::ServerMessage;

use super::output::encode_reply;
use super::ShardCore;
use crate::shard::inbox::{CoreCommand, ShardCommand};

/// The JOINs waiting on this shard's announcements: connection and rid.
pub type JoinWaits = Announcements<(u64, u32)>;

/// Who an announcement that could not be sent is still owed to.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum InterestPeer {
    /// The uplink (and through it the routers).
    Core,
    /// Another shard of this node.
    Shard(u16),
}

/// The acknowledgement a receiver of a room-interest announcement sends
/// back: a command into the announcing shard's inbox.
pub struct InterestAck {
    inbox: flume::Sender<ShardCommand>,
    id: u64,
}

impl InterestAck {
    /// Acknowledges the announcement. A full inbox loses the ack; the
    /// announcing shard's bounded wait covers that.
    pub fn send(self) {
        let _ = self.inbox.try_send(ShardCommand::InterestAcked { id: self.id });
    }
}

impl ShardCore {
    /// Announces this shard's first member of `room` to every other shard
    /// (and the uplink in a cluster). Returns the announcement to wait for,
    /// or `None` when nobody needs telling.
    pub(super) fn announce(&mut self, room: &Rc<str>) -> Option<u64> {
        let peers = self.links.mesh.len() - 1 + usize::from(self.clustered);
        if peers == 0 {
            return None;
        }
        let deadline = self.now_tick + self.settings.interest_ticks;
        let id = self.announcements.start(room, peers, deadline);
        let own_inbox = self.links.mesh.to(self.id).clone();
        let ack = || Some(InterestAck { inbox: own_inbox.clone(), id });
        let mut unsent = 0;
        if self.clustered {
            let command =
                CoreCommand::RoomInterest { room: room.as_ref().into(), shard: self.id, joined: true, ack: ack() };
            if self.links.core.try_send(command).is_err() {
                self.metrics.drops_core_inbox_full.increment(1);
                self.unsent_interest.push((room.clone(), InterestPeer::Core));
                unsent += 1;
            }
        }
        for (shard, sender) in self.links.mesh.all() {
            if shard == self.id {
                continue;
            }
            let command =
                ShardCommand::RoomInterest { room: room.as_ref().into(), shard: self.id, joined: true, ack: ack() };
            if sender.try_send(command).is_err() {
                self.metrics.drops_inbox_full.increment(1);
                self.unsent_interest.push((room.clone(), InterestPeer::Shard(shard)));
                unsent += 1;
            }
        }
        // Announcements that could not be sent will not be acknowledged.
        for _ in 0..unsent {
            if let Some(done) = self.announcements.ack(id) {
                self.complete_announcement(done);
                return None;
            }
        }
        Some(id)
    }

    /// Sends again the announcements that found a peer's inbox full, for
    /// rooms that still have members here; keeps those that fail again.
    pub(super) fn resend_interest(&mut self) {
        let owed = std::mem::take(&mut self.unsent_interest);
        for (room, peer) in owed {
            if self.rooms.get(&room).is_none_or(|r| r.members.is_empty()) {
                continue;
            }
            let sent = match peer {
                InterestPeer::Core => {
                    let command = CoreCommand::RoomInterest {
                        room: room.as_ref().into(),
                        shard: self.id,
                        joined: true,
                        ack: None,
                    };
                    self.links.core.try_send(command).is_ok()
                }
                InterestPeer::Shard(shard) => {
                    let command = ShardCommand::RoomInterest {
                        room: room.as_ref().into(),
                        shard: self.id,
                        joined: true,
                        ack: None,
                    };
                    self.links.mesh.to(shard).try_send(command).is_ok()
                }
            };
            if !sent {
                self.unsent_interest.push((room, peer));
            }
        }
    }

    /// One acknowledgement of announcement `id` arrived.
    pub(super) fn interest_acked(&mut self, id: u64) {
        if let Some(done) = self.announcements.ack(id) {
            self.complete_announcement(done);
        }
    }

    /// Answers announcements past their deadline.
    pub(super) fn expire_announcements(&mut self) {
        for done in self.announcements.expire(self.now_tick) {
            metrics::counter!("corecast_interest_timeouts_total", "shard" => self.id.to_string()).increment(1);
            tracing::warn!(shard = self.id, room = %done.room, missing = done.missing,
                "room interest not acknowledged in time; answering the JOIN anyway");
            self.complete_announcement(done);
        }
    }

    /// Answers every JOIN waiting on a completed announcement and handles
    /// the input each held meanwhile.
    fn complete_announcement(&mut self, done: Done<(u64, u32)>) {
        for (conn, rid) in done.waiters {
            let Some(key) = self.live_key(conn) else { continue };
            if self.request_catch_up(conn, rid) {
                // A room with history: its owner answers the JOIN.
                continue;
            }
            self.conns[key].paused = false;
            self.reply(conn, encode_reply(rid, &ServerMessage::Ok));
            self.process_held(key, conn);
            if self.live_key(conn).is_some() {
                self.resumed.push(conn);
            }
        }
    }
}
