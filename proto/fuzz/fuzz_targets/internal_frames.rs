//! Fuzz target: internal frames as they would arrive from a router link.
//! Arbitrary bytes are copied into an aligned buffer (as the link does) and
//! validated; validation must never panic, and a frame it accepts must be
//! readable in place, its wire bytes sliceable, and its chat request (if
//! any) fully readable.
#![no_main]

use bytes::Bytes;
use corecast_proto::internal::{ArchivedChatRequest, ArchivedInternalFrame, InternalFrameBytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(data);
    let Ok(frame) = InternalFrameBytes::validate(Bytes::from_owner(aligned)) else { return };
    let wire = frame.wire_push();
    assert!(wire.len() <= data.len());
    match frame.archived() {
        ArchivedInternalFrame::RoomPush { room, except_conn, .. } => {
            let _ = (room.as_str().len(), except_conn.to_native());
        }
        ArchivedInternalFrame::Broadcast { .. } => {}
        ArchivedInternalFrame::ConnFrames { conn_ids, reply, .. } => {
            let _ = (conn_ids.iter().fold(0u64, |acc, id| acc ^ id.to_native()), *reply);
        }
        ArchivedInternalFrame::Chat(request) => match request {
            ArchivedChatRequest::Send { user, to, payload, .. } => {
                let _ = (user.as_str().len(), to.as_str().len(), payload.len());
            }
            ArchivedChatRequest::Sync { conv, .. } | ArchivedChatRequest::Ack { conv, .. } => {
                let _ = conv.as_str().len();
            }
            ArchivedChatRequest::Presence { changes } => {
                let _ = changes.iter().map(|c| c.user.as_str().len() + c.device.as_str().len()).sum::<usize>();
            }
            ArchivedChatRequest::Unread { user, .. } => {
                let _ = user.as_str().len();
            }
        },
        ArchivedInternalFrame::NodeHello { node, key, rooms } => {
            let _ = (node.as_str().len(), key.as_str().len(), rooms.iter().map(|r| r.as_str().len()).sum::<usize>());
        }
        ArchivedInternalFrame::RoomInterest { room, joined, id } => {
            let _ = (room.as_str().len(), *joined, id.to_native());
        }
        ArchivedInternalFrame::InterestAck { id } => {
            let _ = id.to_native();
        }
        ArchivedInternalFrame::RouteChanged { users } => {
            let _ = users.iter().map(|u| u.as_str().len()).sum::<usize>();
        }
        ArchivedInternalFrame::RoomPublish { room, from, except_conn, payload } => {
            let _ = (room.as_str().len(), from.as_str().len(), except_conn.to_native(), payload.len());
        }
        ArchivedInternalFrame::StreamRequest { room, conn_id, rid, since, limit, join } => {
            let _ = (room.as_str().len(), conn_id.to_native(), rid.to_native(), since.to_native(), limit.to_native());
            let _ = *join;
        }
        ArchivedInternalFrame::StreamReply { room, conn_id, join, .. } => {
            let _ = (room.as_str().len(), conn_id.to_native(), *join);
        }
        ArchivedInternalFrame::RoomPresence { room, user, shard, joined } => {
            let _ = (room.as_str().len(), user.as_str().len(), shard.to_native(), *joined);
        }
        ArchivedInternalFrame::RoomPresenceSnapshot { room, shard, users } => {
            let _ = (room.as_str().len(), shard.to_native(), users.iter().map(|u| u.as_str().len()).sum::<usize>());
        }
        ArchivedInternalFrame::PresenceQuery { room, conn_id, rid, after, limit } => {
            let _ = (room.as_str().len(), conn_id.to_native(), rid.to_native(), after.as_str().len());
            let _ = limit.to_native();
        }
    }
});
