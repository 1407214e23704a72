//! Rooms in one process, and several hubs joined by the in-process
//! backplane: broadcast, isolation, presence, subscriptions that follow
//! membership.

mod nodes;

use std::time::Duration;

use nodes::{WsClient, ask, assert_silent, connect, eventually, recv, send, start_node};
use tower_ws::backplane::{InProcessBus, Topic};
use tower_ws::handler::Options;

const QUIET: Duration = Duration::from_millis(200);

#[tokio::test]
async fn room_broadcast_reaches_its_members_only() {
    let (hub, addr) = start_node(Options::default()).await;
    let mut a = connect(addr, Some("red")).await;
    let mut b = connect(addr, Some("red")).await;
    let mut c = connect(addr, Some("blue")).await;
    let mut d = connect(addr, None).await;

    send(&mut a, "room red hello red").await;
    assert_eq!(recv(&mut a).await, "hello red");
    assert_eq!(recv(&mut b).await, "hello red");
    send(&mut c, "room blue hello blue").await;
    assert_eq!(recv(&mut c).await, "hello blue");
    // Everyone still reaches all four.
    send(&mut d, "all hello all").await;
    for ws in [&mut a, &mut b, &mut c, &mut d] {
        assert_eq!(recv(ws).await, "hello all");
    }
    assert_silent(&mut d, QUIET).await;
    assert_eq!(hub.clients().to("red").len(), 2);
    assert_eq!(hub.clients().to("blue").len(), 1);
    assert_eq!(hub.clients().to("green").len(), 0);
    assert_eq!(hub.clients().len(), 4);
}

/// Broadcasts walk a cached list of members: every join, leave and
/// disconnect between two broadcasts must show in the second.
#[tokio::test]
async fn each_broadcast_reaches_the_members_of_that_moment() {
    let (_hub, addr) = start_node(Options::default()).await;
    let mut a = connect(addr, None).await;
    let mut b = connect(addr, None).await;
    assert_eq!(ask(&mut a, "join red").await, "join true");
    send(&mut a, "room red one").await;
    assert_eq!(recv(&mut a).await, "one");

    assert_eq!(ask(&mut b, "join red").await, "join true");
    send(&mut a, "room red two").await;
    assert_eq!(recv(&mut a).await, "two");
    assert_eq!(recv(&mut b).await, "two");

    assert_eq!(ask(&mut a, "leave red").await, "leave true");
    send(&mut b, "room red three").await;
    assert_eq!(recv(&mut b).await, "three");
    assert_silent(&mut a, QUIET).await;

    // Everyone: a third client arrives, then the first goes.
    send(&mut a, "all four").await;
    assert_eq!(recv(&mut a).await, "four");
    assert_eq!(recv(&mut b).await, "four");
    let mut c = connect(addr, None).await;
    send(&mut b, "all five").await;
    for ws in [&mut a, &mut b, &mut c] {
        assert_eq!(recv(ws).await, "five");
    }
    drop(a);
    tokio::time::sleep(QUIET).await;
    send(&mut c, "all six").await;
    assert_eq!(recv(&mut b).await, "six");
    assert_eq!(recv(&mut c).await, "six");
}

#[tokio::test]
async fn broadcast_except_skips_the_sender() {
    let (_hub, addr) = start_node(Options::default()).await;
    let mut a = connect(addr, Some("red")).await;
    let mut b = connect(addr, Some("red")).await;
    send(&mut a, "others red not for a").await;
    assert_eq!(recv(&mut b).await, "not for a");
    send(&mut b, "room red for both").await;
    assert_eq!(recv(&mut a).await, "for both");
    assert_eq!(recv(&mut b).await, "for both");
}

#[tokio::test]
async fn join_and_leave_report_changes_and_membership_ends_with_the_connection() {
    let (hub, addr) = start_node(Options::default()).await;
    let mut a = connect(addr, None).await;
    let mut b = connect(addr, None).await;
    assert_eq!(ask(&mut a, "join red").await, "join true");
    assert_eq!(ask(&mut a, "join red").await, "join false");
    assert_eq!(ask(&mut a, "join blue").await, "join true");
    assert_eq!(ask(&mut b, "join red").await, "join true");
    assert_eq!(ask(&mut a, "len red").await, "len 2");
    let client = hub.clients().to_vec().remove(0);
    let mut rooms = client.rooms();
    rooms.sort();
    assert_eq!(rooms, ["blue", "red"]);

    assert_eq!(ask(&mut a, "leave red").await, "leave true");
    assert_eq!(ask(&mut a, "leave red").await, "leave false");
    assert_eq!(ask(&mut b, "len red").await, "len 1");
    // B's connection ends: it leaves its rooms with it.
    drop(b);
    eventually("b leaves red", nodes::WAIT, || {
        hub.clients().to("red").is_empty()
    })
    .await;
    assert_eq!(hub.clients().to("blue").len(), 1);
    drop(a);
    eventually("a leaves blue", nodes::WAIT, || {
        hub.clients().to("blue").is_empty()
    })
    .await;
    // A client whose connection ended cannot join.
    assert!(!client.join("red"));
}

const COUNT: usize = 100;

/// Sends `COUNT` numbered commands: `{prefix}0`, `{prefix}1`, ...
async fn send_numbered(from: &mut WsClient, prefix: &str) {
    for i in 0..COUNT {
        send(from, &format!("{prefix}{i}")).await;
    }
}

/// Receives `0`..`COUNT` in order, then nothing more (no duplicate).
async fn recv_numbered(reader: &mut WsClient) {
    for i in 0..COUNT {
        assert_eq!(recv(reader).await, i.to_string());
    }
    assert_silent(reader, QUIET).await;
}

#[tokio::test]
async fn in_process_nodes_share_broadcasts_rooms_and_presence() {
    let bus = InProcessBus::new();
    let (node_a, node_b) = (bus.node(), bus.node());
    let (hub_a, addr_a) = start_node(Options::default().backplane(node_a.clone())).await;
    let (hub_b, addr_b) = start_node(Options::default().backplane(node_b.clone())).await;
    assert!(!node_b.is_subscribed(Topic::Everyone));

    let mut a1 = connect(addr_a, Some("red")).await;
    let mut a2 = connect(addr_a, Some("blue")).await;
    let mut b1 = connect(addr_b, Some("red")).await;
    assert!(node_b.is_subscribed(Topic::Everyone));
    assert!(node_b.is_subscribed(Topic::Room("red")));
    assert!(!node_b.is_subscribed(Topic::Room("blue")));

    // Everyone: once each, in publisher order, on both nodes.
    send_numbered(&mut a1, "all ").await;
    for reader in [&mut a1, &mut a2, &mut b1] {
        recv_numbered(reader).await;
    }
    // A room: its members on both nodes, not the others.
    send_numbered(&mut b1, "room red ").await;
    for reader in [&mut a1, &mut b1] {
        recv_numbered(reader).await;
    }
    assert_silent(&mut a2, QUIET).await;

    // Presence counts every node's members, seen alike from each.
    for hub in [&hub_a, &hub_b] {
        assert_eq!(hub.clients().len(), 3);
        assert_eq!(hub.clients().to("red").len(), 2);
        assert_eq!(hub.clients().to("blue").len(), 1);
    }
    assert_eq!(hub_a.clients().local_len(), 2);
    assert_eq!(hub_b.clients().local_len(), 1);
    assert_eq!(ask(&mut b1, "len").await, "len 3");

    // Subscriptions follow membership: B's last member leaves.
    drop(b1);
    eventually("b unsubscribes", nodes::WAIT, || {
        !node_b.is_subscribed(Topic::Everyone) && !node_b.is_subscribed(Topic::Room("red"))
    })
    .await;
    assert_eq!(hub_a.clients().len(), 2);
    assert_eq!(hub_a.clients().to("red").len(), 1);
}
