//! A network of the test's own for the networking tests: a "host" namespace, where cradle
//! runs (under `nsenter --net`), joined by a veth to an "upstream" one, which stands for
//! the rest of the world. Nothing a test sends leaves them; dropping the lab deletes both
//! namespaces, and with them every link, bridge and nftables rule made in them.
//!
//! ```text
//!   upstream (NAME-u)                       host (NAME-h): cradle runs here
//!   down0 198.51.100.2/24                   up0 198.51.100.1/24
//!         2001:db8:1::2/64  <---- veth ---->     2001:db8:1::1/64
//!   route to 192.0.2.0/24 via the host      default routes via upstream
//! ```

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

pub const HOST4: &str = "198.51.100.1";
pub const UPSTREAM4: &str = "198.51.100.2";
pub const HOST6: &str = "2001:db8:1::1";
pub const UPSTREAM6: &str = "2001:db8:1::2";

/// The two namespaces.
pub struct NetLab {
    pub host: String,
    pub upstream: String,
}

/// Runs `ip ARGS...` (in namespace `ns` when given), or fails the test.
pub fn ip(ns: Option<&str>, args: &str) -> String {
    let mut command = Command::new("ip");
    if let Some(ns) = ns {
        command.args(["-n", ns]);
    }
    command.args(args.split_whitespace());
    let out = command.output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl NetLab {
    /// A new lab for the test `tag` (a few letters: namespace names are short).
    pub fn new(tag: &str) -> Self {
        crate::require_root();
        let lab = NetLab {
            host: format!("crt-{tag}-h"),
            upstream: format!("crt-{tag}-u"),
        };
        for ns in [&lab.host, &lab.upstream] {
            // a lab a killed test left
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(None, &format!("netns add {ns}"));
            ip(Some(ns), "link set lo up");
        }
        let (h, u) = (&lab.host, &lab.upstream);
        ip(
            None,
            &format!("link add up0 netns {h} type veth peer name down0 netns {u}"),
        );
        ip(Some(h), &format!("addr add {HOST4}/24 dev up0"));
        ip(Some(h), &format!("addr add {HOST6}/64 dev up0 nodad"));
        ip(Some(h), "link set up0 up");
        ip(Some(u), &format!("addr add {UPSTREAM4}/24 dev down0"));
        ip(Some(u), &format!("addr add {UPSTREAM6}/64 dev down0 nodad"));
        ip(Some(u), "link set down0 up");
        ip(Some(h), &format!("route add default via {UPSTREAM4}"));
        ip(Some(h), &format!("-6 route add default via {UPSTREAM6}"));
        ip(Some(u), &format!("route add 192.0.2.0/24 via {HOST4}"));
        ip(
            Some(u),
            &format!("-6 route add 2001:db8:2::/64 via {HOST6}"),
        );
        lab
    }

    pub fn host_path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.host))
    }

    /// `ip ARGS` in the host namespace.
    pub fn host_ip(&self, args: &str) -> String {
        ip(Some(&self.host), args)
    }

    /// `nft ARGS` in the host namespace (its stdout; empty when it fails).
    pub fn host_nft(&self, args: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.host, "nft"])
            .args(args.split_whitespace())
            .output()
            .expect("run nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// How many ICMP echo requests (IPv4) namespace `ns` has received: what it counts in
    /// its /proc/net/snmp, read by a process in it.
    pub fn echo_requests(ns: &str) -> u64 {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "cat", "/proc/net/snmp"])
            .output()
            .expect("read /proc/net/snmp");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut icmp = text.lines().filter(|l| l.starts_with("Icmp:"));
        let (names, values) = (icmp.next().unwrap(), icmp.next().unwrap());
        let at = names
            .split_whitespace()
            .position(|n| n == "InEchos")
            .unwrap();
        values.split_whitespace().nth(at).unwrap().parse().unwrap()
    }

    /// Runs `f` on a thread in namespace `ns` and returns what it returns.
    pub fn within<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{ns}");
        thread::spawn(move || {
            let file = fs::File::open(&path).unwrap();
            // SAFETY: setns takes a descriptor we own and a flag; it moves this thread only.
            #[allow(unsafe_code)]
            let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(done, 0, "setns {path}");
            f()
        })
        .join()
        .unwrap()
    }

    /// An HTTP GET of `/` from namespace `ns` to `addr`: the response's body, or the error.
    pub fn http_get(ns: &str, addr: &str) -> Result<String, String> {
        let addr: SocketAddr = addr.parse().unwrap();
        Self::within(ns, move || {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                .map_err(|e| format!("connect {addr}: {e}"))?;
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream
                .write_all(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut response = String::new();
            stream
                .read_to_string(&mut response)
                .map_err(|e| e.to_string())?;
            Ok(response
                .split_once("\r\n\r\n")
                .map_or(response.clone(), |(_, body)| body.to_owned()))
        })
    }

    /// A TCP server in namespace `ns` on `addr` that answers each connection with the
    /// peer's address and closes; it serves `count` connections (or 30 s) on a thread of
    /// its own, which returns the peers' addresses.
    pub fn echo_peer(ns: &str, addr: &str, count: usize) -> thread::JoinHandle<Vec<String>> {
        let path = format!("/run/netns/{ns}");
        let addr: SocketAddr = addr.parse().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = thread::spawn(move || {
            let file = fs::File::open(&path).unwrap();
            // SAFETY: as in `within`.
            #[allow(unsafe_code)]
            let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(done, 0, "setns {path}");
            let listener = TcpListener::bind(addr).unwrap();
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            let mut peers = Vec::new();
            // never longer than a test would wait for its guest
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while peers.len() < count && std::time::Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.write_all(format!("peer={}\n", peer.ip()).as_bytes());
                        peers.push(peer.ip().to_string());
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
            peers
        });
        ready_rx.recv().unwrap();
        handle
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for ns in [&self.host, &self.upstream] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
