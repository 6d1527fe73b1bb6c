//! A namespace lab owned by a guard.
//!
//! Every host is a network namespace named `lbt<pid>x<n>-<host>`, so parallel tests and a
//! crashed earlier run never collide. Links are veth pairs created directly inside the lab's
//! namespaces, so nothing touches the machine's own interfaces; every namespace gets IPv4 and
//! IPv6 `unreachable` default routes, so no packet can leave the machine. Dropping the [`Lab`]
//! (also while unwinding from a panic) kills the processes it started and deletes its
//! namespaces.

use std::{
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// Whether we run as root.
pub fn is_root() -> bool {
    crate::sys::euid() == 0
}

/// Runs `ip` with `args`; panics with its stderr when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A network namespace of a lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netns {
    /// Its full name under /run/netns.
    pub name: String,
}

impl Netns {
    /// `ip -n NS args...`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// A command that runs in this namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `program args` in the namespace and returns its output (whatever its status).
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program} in {}: {e}", self.name))
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it opens live here.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let name = self.name.clone();
        thread::spawn(move || {
            crate::sys::enter_netns(&name).unwrap_or_else(|e| panic!("setns into {name}: {e}"));
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Sends the IPv4 datagram `datagram` (header included, as built by [`crate::packet`]) out
    /// of `interface`, as it is: the test controls every header field.
    pub fn send_ipv4_raw(&self, interface: &str, datagram: Vec<u8>) {
        let interface = interface.to_owned();
        self.within(move || {
            use socket2::{Domain, Protocol, Socket, Type};
            // IPPROTO_RAW implies IP_HDRINCL.
            let socket = Socket::new(
                Domain::IPV4,
                Type::RAW,
                Some(Protocol::from(libc::IPPROTO_RAW)),
            )
            .expect("raw IPv4 socket");
            socket
                .bind_device(Some(interface.as_bytes()))
                .expect("SO_BINDTODEVICE");
            let dst =
                std::net::Ipv4Addr::new(datagram[16], datagram[17], datagram[18], datagram[19]);
            let to = std::net::SocketAddr::from((dst, 0));
            socket
                .send_to(&datagram, &to.into())
                .expect("sending a raw IPv4 datagram");
        });
    }

    /// Starts `f` on a thread inside this namespace and returns at once.
    pub fn spawn_within<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let name = self.name.clone();
        thread::spawn(move || {
            crate::sys::enter_netns(&name).unwrap_or_else(|e| panic!("setns into {name}: {e}"));
            f()
        })
    }
}

/// The lab: its namespaces, the processes started in them, and a scratch directory.
#[derive(Debug)]
pub struct Lab {
    tag: String,
    dir: std::path::PathBuf,
    namespaces: Vec<Netns>,
    /// Each process with its description and whether it leads its own process group.
    children: Vec<(String, Child, bool)>,
    /// Filesystems mounted for the lab, unmounted with it.
    mounts: Vec<std::path::PathBuf>,
}

impl Lab {
    /// A new, empty lab.
    pub fn new() -> Self {
        let tag = format!(
            "lbt{}x{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Self {
            tag,
            dir,
            namespaces: Vec::new(),
            children: Vec::new(),
            mounts: Vec::new(),
        }
    }

    /// A bpffs of the lab's own, mounted in its directory: pins there outlive the processes
    /// that made them (inside `ip netns exec`, /sys/fs/bpf is a fresh mount per process).
    pub fn bpffs(&mut self) -> std::path::PathBuf {
        let dir = self.dir.join("bpffs");
        std::fs::create_dir_all(&dir).expect("bpffs mount point");
        let out = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&dir)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mounting bpffs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.mounts.push(dir.clone());
        dir
    }

    /// The lab's unique tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The lab's scratch directory (configs, sockets, captures), removed with the lab.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new namespace with `lo` up and unreachable default routes.
    pub fn netns(&mut self, host: &str) -> Netns {
        let ns = Netns {
            name: format!("{}-{host}", self.tag),
        };
        ip(&["netns", "add", &ns.name]);
        self.namespaces.push(ns.clone());
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["route", "add", "unreachable", "default"]);
        ns.ip(&["-6", "route", "add", "unreachable", "default"]);
        ns
    }

    /// A veth pair `a_if` in `a` and `b_if` in `b`, both up, with no IPv6 DAD delay.
    pub fn veth(&self, a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
        self.veth_queues(a, a_if, b, b_if, 1);
    }

    /// [`Lab::veth`] with `queues` transmit and receive queues each way, as a multi-queue NIC
    /// has (native XDP on a veth runs one NAPI instance per receive queue).
    pub fn veth_queues(&self, a: &Netns, a_if: &str, b: &Netns, b_if: &str, queues: usize) {
        let q = queues.to_string();
        ip(&[
            "link",
            "add",
            a_if,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &a.name,
            "type",
            "veth",
            "peer",
            "name",
            b_if,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &b.name,
        ]);
        for (ns, ifname) in [(a, a_if), (b, b_if)] {
            // Addresses are usable at once (tests must not wait out duplicate address detection).
            sysctl(ns, &format!("net.ipv6.conf.{ifname}.accept_dad"), "0");
            ns.ip(&["link", "set", ifname, "up"]);
        }
    }

    /// A LAN: a bridge `br0` in its own namespace `switch`, and one namespace per host, each
    /// with an `eth0` port on the bridge (up, no address yet).
    pub fn lan(&mut self, hosts: &[&str]) -> (Netns, Vec<Netns>) {
        let switch = self.netns("switch");
        switch.ip(&["link", "add", "br0", "type", "bridge"]);
        // Forward at once: no STP listening/learning delay on the ports.
        switch.ip(&["link", "set", "br0", "type", "bridge", "forward_delay", "0"]);
        switch.ip(&["link", "set", "br0", "up"]);
        let hosts = hosts
            .iter()
            .map(|host| {
                let ns = self.netns(host);
                let port = format!("p-{host}");
                self.veth(&ns, "eth0", &switch, &port);
                switch.ip(&["link", "set", &port, "master", "br0"]);
                ns
            })
            .collect();
        (switch, hosts)
    }

    /// Starts `cmd` and keeps it: killed when the lab is dropped.
    pub fn spawn(&mut self, what: &str, mut cmd: Command) -> u32 {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let pid = child.id();
        self.children.push((what.to_owned(), child, false));
        pid
    }

    /// Starts `cmd` as the leader of a new process group (a daemon that forks, such as
    /// keepalived): [`Lab::stop`] and the lab's drop signal the whole group.
    pub fn spawn_group(&mut self, what: &str, mut cmd: Command) -> u32 {
        use std::os::unix::process::CommandExt as _;
        let child = cmd
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let pid = child.id();
        self.children.push((what.to_owned(), child, true));
        pid
    }

    /// Stops a process started with [`Lab::spawn`] or [`Lab::spawn_group`] with `signal`
    /// ("KILL", "TERM", ...; to its whole group for the latter) and waits for it (bounded). The
    /// signal goes out with kill(2) from this process, so a caller's timestamp taken just before
    /// is the moment of the signal.
    pub fn stop(&mut self, pid: u32, signal: &str) -> Option<std::process::ExitStatus> {
        let index = self.children.iter().position(|(_, c, _)| c.id() == pid)?;
        let (what, mut child, group) = self.children.remove(index);
        let number = match signal {
            "KILL" => libc::SIGKILL,
            "TERM" => libc::SIGTERM,
            "INT" => libc::SIGINT,
            "HUP" => libc::SIGHUP,
            other => panic!("signal {other} is not one the lab sends"),
        };
        let target = i32::try_from(pid).expect("pid fits i32");
        crate::sys::kill(if group { -target } else { target }, number)
            .unwrap_or_else(|e| panic!("kill -{signal} {what} (pid {pid}): {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        child.kill().ok();
        panic!("{what} (pid {pid}) did not exit within 10 s of SIG{signal}");
    }

    /// Whether a process started with [`Lab::spawn`] is still running.
    pub fn running(&mut self, pid: u32) -> bool {
        self.children
            .iter_mut()
            .any(|(_, c, _)| c.id() == pid && matches!(c.try_wait(), Ok(None)))
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child, group) in &mut self.children {
            if *group {
                let _kill = Command::new("kill")
                    .args(["-s", "KILL", "--", &format!("-{}", child.id())])
                    .status();
            }
            child.kill().ok();
            child.wait().ok();
        }
        for ns in self.namespaces.drain(..).rev() {
            // Best effort: a namespace that is already gone is fine.
            let _deleted = Command::new("ip")
                .args(["netns", "del", &ns.name])
                .stderr(Stdio::null())
                .status();
        }
        for mount in self.mounts.drain(..) {
            let _unmounted = Command::new("umount").arg(&mount).status();
        }
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// Sets a sysctl inside `ns`.
pub fn sysctl(ns: &Netns, key: &str, value: &str) {
    let out = ns.run("sysctl", &["-qw", &format!("{key}={value}")]);
    assert!(
        out.status.success(),
        "sysctl {key}={value} in {}: {}",
        ns.name,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until `cond` holds, polling every 20 ms; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a file (a socket, a pid file) to appear.
pub fn wait_for_path(path: &Path, timeout: Duration) {
    wait_until(&format!("{} to appear", path.display()), timeout, || {
        path.exists()
    });
}

/// A TCP server that accepts and closes, counts connections, and stops on request (then
/// connections are refused).
#[derive(Debug)]
pub struct TcpServer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TcpServer {
    /// Listens on `addr` inside `ns`; returns once it accepts.
    pub fn start(ns: &Netns, addr: &str) -> Self {
        use std::sync::{
            Arc,
            atomic::{AtomicBool, AtomicUsize},
        };
        let addr: std::net::SocketAddr = addr.parse().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a) = (stop.clone(), accepted.clone());
        let thread = ns.spawn_within(move || {
            let listener = std::net::TcpListener::bind(addr).expect("bind");
            listener.set_nonblocking(true).expect("nonblocking");
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok(_) => {
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        // Listening once the thread has bound: connect until accepted.
        let server = Self {
            stop,
            accepted,
            thread: Some(thread),
        };
        wait_until("server listening", Duration::from_secs(5), || {
            ns.within(move || std::net::TcpStream::connect(addr).is_ok())
        });
        server
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Stops listening: connections are refused from now on.
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP server whose connections each run on their own thread: it greets with its name and
/// echoes ([`NamedServer::start`]), or answers HTTP requests with its name
/// ([`NamedServer::http`]); it can stop listening while its connections carry on.
#[derive(Debug)]
pub struct NamedServer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl NamedServer {
    /// Listens on `addr` inside `ns`; each connection is greeted with `name` and echoed.
    pub fn start(ns: &Netns, addr: &str, name: &str) -> Self {
        use std::io::{Read as _, Write as _};
        let greeting = format!("{name}\n");
        Self::serve(ns, addr, move |mut conn| {
            if conn.write_all(greeting.as_bytes()).is_err() {
                return;
            }
            let mut buf = [0u8; 256];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 || conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        })
    }

    /// Listens on `addr` inside `ns`; answers each HTTP request `200 OK` with body `name`.
    pub fn http(ns: &Netns, addr: &str, name: &str) -> Self {
        use std::io::{Read as _, Write as _};
        let body = format!("{name}\n");
        Self::serve(ns, addr, move |mut conn| {
            let mut head = Vec::new();
            let mut buf = [0u8; 512];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let answer = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _sent = conn.write_all(answer.as_bytes());
        })
    }

    fn serve(
        ns: &Netns,
        addr: &str,
        handle: impl Fn(std::net::TcpStream) + Clone + Send + 'static,
    ) -> Self {
        use std::sync::{Arc, atomic::AtomicBool};
        let addr: std::net::SocketAddr = addr.parse().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let thread = ns.spawn_within(move || {
            let listener = std::net::TcpListener::bind(addr).expect("bind");
            listener.set_nonblocking(true).expect("nonblocking");
            bound_tx.send(()).expect("report bound");
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let handle = handle.clone();
                        thread::spawn(move || {
                            conn.set_nonblocking(false).ok();
                            conn.set_read_timeout(Some(Duration::from_secs(60))).ok();
                            handle(conn);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        bound_rx.recv().expect("server bound");
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops accepting (new connections are refused); established ones carry on.
    pub fn stop_listening(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }
}

impl Drop for NamedServer {
    fn drop(&mut self) {
        self.stop_listening();
    }
}

/// Connects from `client` to `addr` (a [`NamedServer`] behind it); returns the server's name
/// and the connection.
pub fn greet(client: &Netns, addr: &'static str) -> (String, std::net::TcpStream) {
    client.within(move || {
        use std::io::BufRead as _;
        let conn = std::net::TcpStream::connect_timeout(
            &addr.parse().expect("address"),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let mut line = String::new();
        std::io::BufReader::new(conn.try_clone().expect("clone"))
            .read_line(&mut line)
            .expect("greeting");
        (line.trim().to_owned(), conn)
    })
}
