//! Several nodes joined through a real Redis (started by each test on a
//! free port, without persistence): exactly-once delivery in publisher
//! order, room isolation, presence, failures, and a three-shard cluster.

mod nodes;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nodes::redis_server::{RedisCluster, RedisServer, free_port};
use nodes::{WsClient, assert_silent, connect, eventually, recv, send, start_node};
use tower_ws::backplane::{RedisBackplane, RedisConfig};
use tower_ws::handler::{Hub, Options};

const QUIET: Duration = Duration::from_millis(300);
const HEARTBEAT: Duration = Duration::from_millis(200);
const TTL: Duration = Duration::from_millis(600);

/// Short heartbeats and backoff, so the tests are quick.
fn fast(config: RedisConfig) -> RedisConfig {
    config
        .heartbeat(HEARTBEAT)
        .presence_ttl(TTL)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(400))
}

struct Node {
    hub: Hub<nodes::RoomChat>,
    addr: std::net::SocketAddr,
    redis: RedisBackplane,
}

async fn node(config: RedisConfig) -> Node {
    let redis = RedisBackplane::new(fast(config)).expect("valid config");
    let (hub, addr) = start_node(Options::default().backplane(redis.clone())).await;
    Node { hub, addr, redis }
}

/// Waits until `server` counts `n` subscribers of `channel`.
async fn subscribers(server: &RedisServer, channel: &str, n: usize) {
    let start = Instant::now();
    while server.subscribers(channel) != n {
        assert!(
            start.elapsed() < nodes::WAIT,
            "{channel}: {} subscribers, expected {n}",
            server.subscribers(channel)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two nodes on `server`, a client on each (in no room), once both nodes
/// listen to `tower-ws:all` and A can publish.
async fn two_nodes(server: &RedisServer) -> (Node, Node, WsClient, WsClient) {
    let a = node(RedisConfig::new(server.url())).await;
    let b = node(RedisConfig::new(server.url())).await;
    let a1 = connect(a.addr, None).await;
    let b1 = connect(b.addr, None).await;
    subscribers(server, "tower-ws:all", 2).await;
    eventually("A publishes", nodes::WAIT, || {
        a.redis.stats().publisher_connected
    })
    .await;
    (a, b, a1, b1)
}

/// Reads `count` messages and checks, per publisher prefix, that each
/// arrives once and in order.
async fn recv_in_publisher_order(reader: &mut WsClient, prefixes: &[&str], each: usize) {
    let mut next = vec![0; prefixes.len()];
    for _ in 0..prefixes.len() * each {
        let text = recv(reader).await;
        let p = prefixes
            .iter()
            .position(|p| text.starts_with(p))
            .unwrap_or_else(|| panic!("unexpected {text:?}"));
        assert_eq!(
            text,
            format!("{}{}", prefixes[p], next[p]),
            "order of {}",
            prefixes[p]
        );
        next[p] += 1;
    }
    assert_silent(reader, QUIET).await;
}

#[tokio::test]
async fn three_nodes_deliver_every_broadcast_once_in_publisher_order() {
    let server = RedisServer::start();
    let (a, b, c) = (
        node(RedisConfig::new(server.url())).await,
        node(RedisConfig::new(server.url())).await,
        node(RedisConfig::new(server.url())).await,
    );
    let mut a1 = connect(a.addr, None).await;
    let mut a2 = connect(a.addr, None).await;
    let mut b1 = connect(b.addr, None).await;
    let mut c1 = connect(c.addr, None).await;
    // One subscriber connection per node, whatever its number of clients.
    subscribers(&server, "tower-ws:all", 3).await;
    assert_eq!(server.cli(&["PUBSUB", "CHANNELS"]).lines().count(), 1);

    // Two publishers on two nodes at once.
    const EACH: usize = 200;
    let (mut a_pub, mut b_pub) = (connect(a.addr, None).await, connect(b.addr, None).await);
    let a_sends = async {
        for i in 0..EACH {
            send(&mut a_pub, &format!("all a{i}")).await;
        }
    };
    let b_sends = async {
        for i in 0..EACH {
            send(&mut b_pub, &format!("all b{i}")).await;
        }
    };
    tokio::join!(a_sends, b_sends);
    for reader in [&mut a1, &mut a2, &mut b1, &mut c1] {
        recv_in_publisher_order(reader, &["a", "b"], EACH).await;
    }
    // One Redis message per broadcast, not one per recipient; nothing lost.
    eventually("published", nodes::WAIT, || {
        a.redis.stats().published == EACH as u64 && b.redis.stats().published == EACH as u64
    })
    .await;
    for n in [&a, &b, &c] {
        let stats = n.redis.stats();
        assert_eq!((stats.publish_dropped, stats.receive_dropped), (0, 0));
    }
    // Each node received the other publisher's messages only (its own
    // echo is ignored): C got both, A and B one each.
    assert_eq!(c.redis.stats().received, 2 * EACH as u64);
    assert_eq!(a.redis.stats().received, EACH as u64);
    assert_eq!(b.redis.stats().received, EACH as u64);
    drop((a_pub, b_pub));
}

#[tokio::test]
async fn rooms_reach_only_the_nodes_with_members() {
    let server = RedisServer::start();
    let (a, b, c) = (
        node(RedisConfig::new(server.url())).await,
        node(RedisConfig::new(server.url())).await,
        node(RedisConfig::new(server.url())).await,
    );
    let mut a_red = connect(a.addr, Some("red")).await;
    let mut b_red = connect(b.addr, Some("red")).await;
    let mut c_blue = connect(c.addr, Some("blue")).await;
    subscribers(&server, "tower-ws:room:red", 2).await;
    subscribers(&server, "tower-ws:room:blue", 1).await;
    subscribers(&server, "tower-ws:all", 3).await;

    for i in 0..50 {
        send(&mut a_red, &format!("room red r{i}")).await;
    }
    send(&mut c_blue, "room blue only blue").await;
    for reader in [&mut a_red, &mut b_red] {
        recv_in_publisher_order(reader, &["r"], 50).await;
    }
    assert_eq!(recv(&mut c_blue).await, "only blue");
    assert_silent(&mut c_blue, QUIET).await;
    // C is not subscribed to red: Redis sent it none of red's traffic.
    assert_eq!(c.redis.stats().received, 0);
    assert_eq!(b.redis.stats().received, 50);

    // B's last red member leaves: B unsubscribes, A stays.
    drop(b_red);
    subscribers(&server, "tower-ws:room:red", 1).await;
    subscribers(&server, "tower-ws:all", 2).await;
    send(&mut a_red, "room red after").await;
    assert_eq!(recv(&mut a_red).await, "after");
    assert_eq!(b.redis.stats().received, 50);
    drop(c);
}

/// Everyone, red and blue, as `hub` counts them on every node.
fn counts(hub: &Hub<nodes::RoomChat>) -> (usize, usize, usize) {
    let clients = hub.clients();
    (
        clients.len(),
        clients.to("red").len(),
        clients.to("blue").len(),
    )
}

#[test]
fn presence_agrees_on_every_node_and_a_killed_node_disappears_in_time() {
    let server = RedisServer::start();
    let main = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    main.block_on(async {
        let a = node(RedisConfig::new(server.url())).await;
        let b = node(RedisConfig::new(server.url())).await;
        // Node C on a runtime of its own, to kill it without a goodbye.
        let doomed = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let url = server.url();
        let c = doomed
            .spawn(async move { node(RedisConfig::new(url)).await })
            .await
            .unwrap();

        let _a1 = connect(a.addr, Some("red")).await;
        let _a2 = connect(a.addr, None).await;
        let _b1 = connect(b.addr, Some("red")).await;
        let _c1 = connect(c.addr, Some("red")).await;
        let _c2 = connect(c.addr, Some("blue")).await;
        let hubs = [&a.hub, &b.hub, &c.hub];
        eventually(
            "every node counts 5 online, 3 in red, 1 in blue",
            nodes::WAIT,
            || hubs.iter().all(|hub| counts(hub) == (5, 3, 1)),
        )
        .await;
        assert_eq!(a.hub.clients().local_len(), 2);

        // C crashes: no goodbye, its counts expire.
        doomed.shutdown_background();
        let killed = Instant::now();
        let bound = TTL + HEARTBEAT;
        // The slack is for a loaded machine (these nodes, their heartbeats
        // and this loop share one thread); without expiry it never happens.
        eventually(
            "C's members leave the counts",
            bound + Duration::from_secs(5),
            || [&a.hub, &b.hub].iter().all(|hub| counts(hub) == (3, 2, 0)),
        )
        .await;
        let took = killed.elapsed();
        assert!(
            took <= bound + Duration::from_secs(3),
            "took {took:?}, bound {bound:?}"
        );
        drop(c);
    });
}

#[tokio::test]
async fn redis_killed_mid_traffic_and_restarted() {
    let mut server = RedisServer::start();
    let port = server.port;
    let a = node(RedisConfig::new(server.url())).await;
    let b = node(RedisConfig::new(server.url())).await;
    let mut sender = connect(a.addr, None).await;
    let mut a1 = connect(a.addr, None).await;
    let mut b1 = connect(b.addr, None).await;
    subscribers(&server, "tower-ws:all", 2).await;

    // Every 10 ms a numbered broadcast from A; Redis dies after 50 and
    // comes back a second later; 400 in all.
    const TOTAL: usize = 400;
    let traffic = async {
        for i in 0..TOTAL {
            send(&mut sender, &format!("all {i}")).await;
            if i == 50 {
                server.kill();
            }
            if i == 150 {
                server = RedisServer::start_on(port, false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    // A's own client gets everything, in order, throughout.
    let local = async {
        for i in 0..TOTAL {
            assert_eq!(recv(&mut a1).await, format!("{i}"));
        }
    };
    // B's client: a gap while Redis is away, then delivery resumes; never
    // a duplicate, never out of order.
    let remote = async {
        let mut got = Vec::new();
        while got.last() != Some(&(TOTAL - 1)) {
            let n: usize = recv(&mut b1).await.parse().unwrap();
            assert!(got.last().is_none_or(|last| n > *last), "{n} after {got:?}");
            got.push(n);
        }
        got
    };
    let ((), (), got) = tokio::join!(traffic, local, remote);
    let restarted_at = 150;
    assert!(got.iter().any(|n| *n <= 50), "delivered before the crash");
    let resumed = got.iter().find(|n| **n > restarted_at).copied().unwrap();
    // Resumed within 3 s (300 messages of 10 ms) of the restart.
    assert!(resumed < restarted_at + 300, "resumed at {resumed}");
    let unique: HashSet<_> = got.iter().collect();
    assert_eq!(unique.len(), got.len());

    // Every broadcast is accounted for: published, or dropped and counted.
    // (`published` counts Redis's reply to A, which may come after B has
    // the message.)
    eventually("every broadcast published or dropped", nodes::WAIT, || {
        let stats = a.redis.stats();
        stats.published + stats.publish_dropped == TOTAL as u64
    })
    .await;
    let stats = a.redis.stats();
    assert!(stats.publish_dropped > 0, "{stats:?}");
    assert!(got.len() as u64 <= TOTAL as u64 - stats.publish_dropped + 1);
    assert!(b.redis.stats().reconnects >= 1);
    assert!(b.redis.stats().subscriber_connected);
}

#[tokio::test]
async fn a_frozen_redis_never_stalls_websockets() {
    let server = RedisServer::start();
    let config = RedisConfig::new(server.url())
        .publish_queue(16)
        .response_timeout(Duration::from_millis(500));
    let a = node(config.clone()).await;
    let b = node(config).await;
    let mut a1 = connect(a.addr, None).await;
    let mut b1 = connect(b.addr, None).await;
    subscribers(&server, "tower-ws:all", 2).await;

    // Redis stops answering (SIGSTOP): A's clients keep chatting at full
    // speed; what cannot be published is dropped and counted.
    server.signal("STOP");
    let start = Instant::now();
    for i in 0..500 {
        send(&mut a1, &format!("all {i}")).await;
        assert_eq!(recv(&mut a1).await, i.to_string());
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(
        a.redis.stats().publish_dropped >= 500 - 16 - 64 - 1,
        "{:?}",
        a.redis.stats()
    );

    // Thawed: the connections are re-established and cross-node delivery
    // resumes.
    server.signal("CONT");
    let resumed = Instant::now();
    loop {
        send(&mut a1, "all again").await;
        assert_eq!(recv(&mut a1).await, "again");
        if let Ok(Some(Ok(msg))) = tokio::time::timeout(
            Duration::from_millis(100),
            futures_util::StreamExt::next(&mut b1),
        )
        .await
        {
            if msg.to_text().unwrap() == "again" {
                break;
            }
        }
        assert!(
            resumed.elapsed() < nodes::WAIT,
            "cross-node delivery did not resume"
        );
    }
}

#[tokio::test]
async fn starts_without_redis_serves_locally_and_joins_when_it_appears() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let a = node(RedisConfig::new(&url)).await;
    let b = node(RedisConfig::new(&url)).await;
    let mut a1 = connect(a.addr, None).await;
    let mut b1 = connect(b.addr, None).await;
    send(&mut a1, "all alone").await;
    assert_eq!(recv(&mut a1).await, "alone");
    assert_silent(&mut b1, QUIET).await;
    assert_eq!(a.hub.clients().len(), 1);

    let server = RedisServer::start_on(port, false);
    subscribers(&server, "tower-ws:all", 2).await;
    eventually("A publishes again", nodes::WAIT, || {
        a.redis.stats().publisher_connected
    })
    .await;
    send(&mut a1, "all together").await;
    assert_eq!(recv(&mut a1).await, "together");
    assert_eq!(recv(&mut b1).await, "together");
    eventually("presence", nodes::WAIT, || a.hub.clients().len() == 2).await;
}

#[tokio::test]
async fn credentials_from_the_config_reach_a_password_protected_redis() {
    let server = RedisServer::start_with_password("s3cret");
    let url = server.url();
    let a = node(RedisConfig::new(&url).password("s3cret")).await;
    let b = node(RedisConfig::new(&url).password("s3cret")).await;
    // A node with the wrong password never connects, and keeps serving.
    let wrong = node(RedisConfig::new(&url).password("wrong")).await;
    let mut a1 = connect(a.addr, None).await;
    let mut b1 = connect(b.addr, None).await;
    let mut w1 = connect(wrong.addr, None).await;
    subscribers(&server, "tower-ws:all", 2).await;
    eventually("A publishes", nodes::WAIT, || {
        a.redis.stats().publisher_connected
    })
    .await;
    send(&mut a1, "all over auth").await;
    assert_eq!(recv(&mut b1).await, "over auth");
    send(&mut w1, "all local only").await;
    assert_eq!(recv(&mut w1).await, "local only");
    assert_silent(&mut b1, QUIET).await;
    let stats = wrong.redis.stats();
    assert!(!stats.publisher_connected && !stats.subscriber_connected);
    assert_eq!(stats.publish_dropped, 1);
}

#[tokio::test]
async fn cluster_rooms_on_different_shards_use_sharded_pub_sub() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    // Two rooms whose channels hash to different shards.
    let mut rooms: Vec<(String, u16)> = Vec::new();
    for i in 0.. {
        let room = format!("room{i}");
        let owner = cluster.owner(&format!("tower-ws:room:{room}")).port;
        if rooms.iter().all(|(_, port)| *port != owner) {
            rooms.push((room, owner));
        }
        if rooms.len() == 2 {
            break;
        }
    }
    let urls = [cluster.nodes[0].url()];
    let a = node(RedisConfig::cluster(urls.clone())).await;
    let b = node(RedisConfig::cluster(urls)).await;
    let (red, blue) = (rooms[0].0.as_str(), rooms[1].0.as_str());
    let mut a_red = connect(a.addr, Some(red)).await;
    let mut b_red = connect(b.addr, Some(red)).await;
    let mut b_blue = connect(b.addr, Some(blue)).await;
    for (room, _) in &rooms {
        let channel = format!("tower-ws:room:{room}");
        let owner = cluster.owner(&channel);
        let want = if room == red { 2 } else { 1 };
        subscribers(owner, &channel, want).await;
        for other in cluster.nodes.iter().filter(|n| n.port != owner.port) {
            assert_eq!(
                other.subscribers(&channel),
                0,
                "{channel} only on its shard"
            );
        }
    }
    subscribers(cluster.owner("tower-ws:all"), "tower-ws:all", 2).await;

    for i in 0..50 {
        send(&mut a_red, &format!("room {red} r{i}")).await;
        send(&mut b_blue, &format!("room {blue} b{i}")).await;
    }
    for reader in [&mut a_red, &mut b_red] {
        recv_in_publisher_order(reader, &["r"], 50).await;
    }
    recv_in_publisher_order(&mut b_blue, &["b"], 50).await;
    eventually("50 published by A", nodes::WAIT, || {
        a.redis.stats().published == 50
    })
    .await;
    assert_eq!(b.redis.stats().received, 50);
    assert_eq!(a.redis.stats().received, 0);
    // Presence works on the cluster too.
    eventually("presence", nodes::WAIT, || {
        a.hub.clients().len() == 3 && b.hub.clients().to(red).len() == 2
    })
    .await;
}

/// Redis full at `maxmemory` (policy `noeviction`) refuses writes with
/// `-OOM` but still carries pub/sub. Presence writes fail every heartbeat;
/// that must not tear down the publisher connection, or every broadcast
/// is dropped and the other nodes' users never see them.
#[tokio::test]
async fn a_full_redis_refusing_writes_still_carries_broadcasts() {
    let server = RedisServer::start();
    let (a, _b, mut a1, mut b1) = two_nodes(&server).await;
    // Redis is full (noeviction): writes fail with -OOM, PUBLISH still works.
    server.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    assert_eq!(server.cli(&["PUBLISH", "x", "y"]), "0");
    // A few heartbeats with presence refused.
    tokio::time::sleep(HEARTBEAT * 3).await;
    const N: usize = 30;
    for i in 0..N {
        send(&mut a1, &format!("all m{i}")).await;
        assert_eq!(recv(&mut a1).await, format!("m{i}"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..N {
        assert_eq!(
            recv(&mut b1).await,
            format!("m{i}"),
            "A: {:?}",
            a.redis.stats()
        );
    }
    let stats = a.redis.stats();
    assert!(stats.publisher_connected, "{stats:?}");
    assert_eq!(
        (stats.publish_dropped, stats.reconnects),
        (0, 0),
        "{stats:?}"
    );
    assert!(stats.redis_errors > 0, "presence refused: {stats:?}");
}

/// A command the subscriber sends refused by Redis (here `PING`, denied by
/// the ACL; `-LOADING` after a restart does the same) is an answer, not a
/// lost connection: the subscriber must not reconnect every heartbeat,
/// losing the messages published meanwhile.
#[tokio::test]
async fn a_refused_ping_does_not_reconnect_the_subscriber() {
    let server = RedisServer::start();
    let (_a, b, mut a1, mut b1) = two_nodes(&server).await;
    server.cli(&["ACL", "SETUSER", "default", "-ping"]);
    tokio::time::sleep(HEARTBEAT * 5).await;
    let stats = b.redis.stats();
    assert_eq!(stats.reconnects, 0, "{stats:?}");
    assert!(
        stats.subscriber_connected && stats.redis_errors > 0,
        "{stats:?}"
    );
    send(&mut a1, "all still here").await;
    assert_eq!(recv(&mut b1).await, "still here");
}

/// Moving a room channel's slot to another shard (resharding, rebalancing)
/// makes Redis 7 unsubscribe the old shard's subscribers itself, with a
/// `sunsubscribe` push. The nodes must subscribe again, on the new owner;
/// otherwise the room's members on other nodes never hear from it again.
#[tokio::test]
async fn a_cluster_slot_migration_does_not_cut_a_room_off() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let urls = [cluster.nodes[0].url()];
    let a = node(RedisConfig::cluster(urls.clone())).await;
    let b = node(RedisConfig::cluster(urls)).await;
    let mut a_red = connect(a.addr, Some("red")).await;
    let mut b_red = connect(b.addr, Some("red")).await;
    let channel = "tower-ws:room:red";
    let owner = cluster.owner(channel);
    subscribers(owner, channel, 2).await;
    send(&mut a_red, "room red before").await;
    assert_eq!(recv(&mut a_red).await, "before");
    assert_eq!(recv(&mut b_red).await, "before");

    // Move the (empty) slot of the room's channel to another shard, as a
    // resharding does: the new owner first, then the old, then the rest.
    let slot = owner.cli(&["CLUSTER", "KEYSLOT", channel]);
    let target = cluster.nodes.iter().find(|n| n.port != owner.port).unwrap();
    let target_id = target.cli(&["CLUSTER", "MYID"]);
    let setslot = ["CLUSTER", "SETSLOT", &slot, "NODE", &target_id];
    target.cli(&setslot);
    owner.cli(&setslot);
    for n in &cluster.nodes {
        n.cli(&setslot);
    }
    // Both nodes subscribe again, on the new owner.
    subscribers(target, channel, 2).await;
    assert_eq!(owner.subscribers(channel), 0);
    send(&mut a_red, "room red after").await;
    assert_eq!(recv(&mut a_red).await, "after");
    assert_eq!(recv(&mut b_red).await, "after");
}

/// Redis disconnects a subscriber whose output buffer passes 32 MB (its
/// default `client-output-buffer-limit pubsub`): one broadcast that large
/// would cut off every node's subscriber, and the other nodes' users would
/// lose what is broadcast until they reconnect. Over
/// `RedisConfig::max_payload` (1 MiB by default), a broadcast stays on its
/// node and is counted; Redis never sees it.
#[tokio::test]
async fn a_broadcast_over_max_payload_stays_off_redis() {
    let server = RedisServer::start();
    let (a, b, _a1, mut b1) = two_nodes(&server).await;
    let huge = tower_ws::Message::binary(vec![7u8; 33 << 20]);
    a.hub.clients().broadcast(huge);
    a.hub.clients().broadcast("after");
    assert_eq!(recv(&mut b1).await, "after");
    eventually("A published the small one", nodes::WAIT, || {
        a.redis.stats().published == 1
    })
    .await;
    let stats = a.redis.stats();
    assert_eq!((stats.publish_dropped, stats.publish_too_large), (1, 1));
    assert_eq!(b.redis.stats().reconnects, 0, "{:?}", b.redis.stats());
}

/// A publish that times out on a publisher connection the heartbeat has
/// already replaced must not drop the new one: that costs a needless
/// reconnect and the broadcasts of a heartbeat. Redis pauses writes
/// (`CLIENT PAUSE WRITE`) for 2 s with a 1 s response timeout: presence
/// times out first and the heartbeat opens a new connection (the pause
/// lets it connect); a broadcast sent 600 ms in times out on the old
/// connection after that.
#[tokio::test]
async fn a_stale_publish_error_does_not_drop_the_new_publisher_connection() {
    let server = RedisServer::start();
    let config = RedisConfig::new(server.url()).response_timeout(Duration::from_secs(1));
    let a = node(config).await;
    eventually("A publishes", nodes::WAIT, || {
        a.redis.stats().publisher_connected
    })
    .await;
    server.cli(&["CLIENT", "PAUSE", "2000", "WRITE"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    a.hub.clients().broadcast("into the pause");
    // Past the pause, the stale timeout and a few heartbeats.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // One reconnect (presence timed out, or the broadcast did on the only
    // connection), not a second for the stale error: bounds, not exact
    // counts, so a loaded machine's timing cannot fail it.
    let stats = a.redis.stats();
    assert!(stats.publisher_connected, "{stats:?}");
    assert!(stats.reconnects <= 1, "a needless reconnect: {stats:?}");
    assert!(stats.publish_dropped <= 1, "{stats:?}");
}

/// A primary demoted to a replica (a failover that moved its DNS name, or
/// `REPLICAOF`) answers writes with `-READONLY`, and a PUBLISH there reaches
/// none of the primary's subscribers: the node drops that connection to
/// find the primary, rather than keep publishing into a replica.
#[tokio::test]
async fn a_demoted_primary_is_left_for_a_new_connection() {
    let server = RedisServer::start();
    let primary = RedisServer::start();
    let a = node(RedisConfig::new(server.url())).await;
    eventually("A publishes", nodes::WAIT, || {
        a.redis.stats().publisher_connected
    })
    .await;
    server.cli(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]);
    eventually("A reconnects", nodes::WAIT, || {
        a.redis.stats().reconnects >= 1
    })
    .await;
}
