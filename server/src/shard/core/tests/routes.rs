//! The route pages the node's refresh reads from the connection records.

use std::collections::BTreeSet;

use crate::shard::inbox::ShardCommand;

use super::{config, Harness};

#[test]
fn route_pages_list_every_authenticated_connection_once() {
    let mut h = Harness::new(1, config());
    let mut expected = BTreeSet::new();
    let mut closed = Vec::new();
    for i in 0..2_500 {
        let id = h.user(&format!("user-{i}"));
        if i % 7 == 0 {
            closed.push(id);
        } else {
            expected.insert((format!("user-{i}"), id));
        }
    }
    // Connections that never authenticated, and ones that went, have no route.
    for _ in 0..30 {
        h.connect();
    }
    let now = h.now();
    for id in closed {
        h.core.on_peer_closed(now, id);
    }
    h.core.end_round();

    let mut listed = BTreeSet::new();
    let mut pages = 0;
    let mut from = Some(0);
    while let Some(start) = from {
        let (reply, answer) = flume::bounded(1);
        h.core.on_command(now, ShardCommand::ListRoutes { from: start, limit: 1_000, reply });
        let page = answer.try_recv().expect("the shard answers at once");
        assert!(page.routes.len() <= 1_000);
        for (user, id, device) in page.routes {
            assert_eq!(&*device, "", "the harness's users use the default device");
            assert!(listed.insert((user.to_string(), id)), "{user} listed twice");
        }
        pages += 1;
        from = page.next;
    }
    assert_eq!(listed, expected);
    assert_eq!(pages, 3, "2,142 routes in pages of 1,000");
}
