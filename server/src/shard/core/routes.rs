//! The routes of this shard's connections, read from the connection
//! records when the node rewrites its routes in Redis. The node keeps no
//! copy of them: the records already hold each connection's interned user
//! and device, so a copy would cost every connection about a hundred bytes
//! more for something needed once every third of the route lifetime.

use super::conn::conn_id;
use super::ShardCore;
use crate::shard::inbox::RoutePage;

impl ShardCore {
    /// The routes of the authenticated connections in slots `from` and
    /// after, at most `limit` of them, and where the next page starts.
    pub(super) fn route_page(&self, from: u32, limit: usize) -> RoutePage {
        let mut page = RoutePage::default();
        let end = self.conns.capacity().max(from as usize);
        for key in from as usize..end {
            if page.routes.len() == limit.max(1) {
                page.next = Some(key as u32);
                return page;
            }
            let Some(conn) = self.conns.get(key) else { continue };
            let Some(identity) = &conn.identity else { continue };
            let id = conn_id(self.id, conn.generation, key as u32);
            page.routes.push((identity.user.as_ref().into(), id, identity.device.as_ref().into()));
        }
        page
    }
}
