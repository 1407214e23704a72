//! Real `redis-server` processes for the tests: each on a free loopback
//! port, without persistence, killed when dropped (even on panic).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    cluster: bool,
    /// `-a PASSWORD` for redis-cli, if the server wants one.
    cli_auth: Vec<String>,
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// A standalone server on a free port.
    pub fn start() -> Self {
        Self::start_fresh(false, &[], &[])
    }

    /// A cluster-enabled server (no slots yet) on a free port.
    pub fn start_cluster_node() -> Self {
        Self::start_fresh(true, &[], &[])
    }

    /// A standalone server on a free port that wants `password`.
    pub fn start_with_password(password: &str) -> Self {
        Self::start_fresh(false, &["--requirepass", password], &["-a", password])
    }

    /// A server on `port` (to restart one where it was).
    pub fn start_on(port: u16, cluster: bool) -> Self {
        Self::spawn(port, cluster, &[], &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A server on a free port. A port found free can be taken by another
    /// process before the server binds it (tests run in parallel): the
    /// server then exits at once, and a new port is tried.
    fn start_fresh(cluster: bool, extra: &[&str], cli_auth: &[&str]) -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            match Self::spawn(free_port(), cluster, extra, cli_auth) {
                Ok(server) => return server,
                Err(e) => last = e,
            }
        }
        panic!("{last} (5 ports tried)")
    }

    fn spawn(port: u16, cluster: bool, extra: &[&str], cli_auth: &[&str]) -> Result<Self, String> {
        let dir =
            std::env::temp_dir().join(format!("tower-ws-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if cluster {
            // The cluster bus gets a free port of its own: by default it is
            // the port + 10000, and redis-server refuses to start on a port
            // above 55535 (a fifth of the ephemeral range).
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-port",
                &free_port().to_string(),
            ]);
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot start redis-server ({e}): run scripts/setup-test-deps.sh or apt-get install redis-server redis-tools")
        });
        let mut server = RedisServer {
            child: Some(child),
            port,
            dir,
            cluster,
            cli_auth: cli_auth.iter().map(|s| s.to_string()).collect(),
        };
        let start = Instant::now();
        while server.try_cli(&["PING"]).as_deref() != Some("PONG") {
            let child = server.child.as_mut().expect("running");
            if let Ok(Some(status)) = child.try_wait() {
                // Dropping `server` removes its directory.
                return Err(format!(
                    "redis-server on port {port} exited at start ({status}): the port may be taken"
                ));
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err(format!(
                    "redis-server on port {port} did not answer PING within 20 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.cli_auth)
            .arg("--no-auth-warning")
            .args(args)
            .stderr(Stdio::null())
            .output()
            .expect("redis-cli (apt-get install redis-tools)");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs `redis-cli` against this server; its trimmed output.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    /// Subscribers of `channel` (`PUBSUB NUMSUB`, or `PUBSUB SHARDNUMSUB`
    /// on a cluster node).
    pub fn subscribers(&self, channel: &str) -> usize {
        let command = if self.cluster {
            "SHARDNUMSUB"
        } else {
            "NUMSUB"
        };
        let out = self.cli(&["PUBSUB", command, channel]);
        out.lines()
            .nth(1)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Sends a signal (`STOP` freezes the server, `CONT` thaws it).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A three-shard Redis Cluster (three primaries, no replicas).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_cluster_node()).collect();
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(out.success(), "redis-cli --cluster create failed");
        let start = Instant::now();
        for node in &nodes {
            while !node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(start.elapsed() < Duration::from_secs(20), "cluster not ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    /// The node that owns `channel`'s slot.
    pub fn owner(&self, channel: &str) -> &RedisServer {
        let slot: u16 = self.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", channel])
            .parse()
            .unwrap();
        self.nodes
            .iter()
            .find(|node| node.owns(slot))
            .expect("every slot has an owner")
    }
}

impl RedisServer {
    /// Whether this cluster node serves `slot` (from `CLUSTER NODES`).
    fn owns(&self, slot: u16) -> bool {
        let nodes = self.cli(&["CLUSTER", "NODES"]);
        let Some(me) = nodes.lines().find(|line| line.contains("myself")) else {
            return false;
        };
        me.split_whitespace().skip(8).any(|range| {
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            match (lo.parse::<u16>(), hi.parse::<u16>()) {
                (Ok(lo), Ok(hi)) => (lo..=hi).contains(&slot),
                _ => false,
            }
        })
    }
}
