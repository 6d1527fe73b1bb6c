//! VRRP routers in a namespace lab, lbd or keepalived 2.2.7, configured with the same
//! keepalived.conf text: the rig of the VRRP tests (`tests/netns_vrrp.rs`) and of
//! `cargo xtask bench failover`.
//!
//! Lab: `switch` holds bridge `br0`; routers d1, d2, ... each have `eth0` on it with
//! 192.0.2.1, .2, .../24. The virtual router is VRID 51 with VIP 192.0.2.100 (or 2001:db8::100).
//! Who is master is read off the kernel (the VIP on `eth0`) and, for lbd, from
//! `lbctl status --json`.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::lab::{Lab, Netns, wait_for_path, wait_until};

/// The IPv4 virtual address.
pub const VIP: &str = "192.0.2.100";
/// The IPv6 virtual address.
pub const VIP6: &str = "2001:db8::100";
/// Long enough for any takeover these tests cause (the slowest is VRRPv2's 3.6 s down interval).
pub const TAKEOVER: Duration = Duration::from_secs(15);

/// What runs a router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `lbd run --dataplane none` on the keepalived.conf.
    Lbd,
    /// `keepalived -P` (VRRP only: the host kernel has no IPVS) on the same file.
    Keepalived,
}

/// One router's settings; rendered as keepalived.conf.
#[derive(Clone, Debug)]
pub struct Settings {
    /// VRRP version, 2 or 3.
    pub version: u8,
    /// Priority.
    pub priority: u8,
    /// `advert_int` as written in the file.
    pub advert_int: &'static str,
    /// The virtual address: [`VIP`] (/24) or [`VIP6`] (/64).
    pub vip: &'static str,
    /// More vrrp_instance lines.
    pub extra: String,
    /// More global_defs lines.
    pub globals: String,
    /// More top-level blocks (vrrp_script, vrrp_track_file, ...).
    pub blocks: String,
}

impl Settings {
    /// Settings of VRID 51 with [`VIP`].
    pub fn new(version: u8, priority: u8, advert_int: &'static str) -> Self {
        Self {
            version,
            priority,
            advert_int,
            vip: VIP,
            extra: String::new(),
            globals: String::new(),
            blocks: String::new(),
        }
    }

    /// Adds a line to global_defs.
    pub fn global(mut self, line: &str) -> Self {
        self.globals.push_str("    ");
        self.globals.push_str(line);
        self.globals.push('\n');
        self
    }

    /// Adds a top-level block.
    pub fn block(mut self, text: &str) -> Self {
        self.blocks.push_str(text);
        self.blocks.push('\n');
        self
    }

    /// Adds a line to the vrrp_instance.
    pub fn with(mut self, line: &str) -> Self {
        self.extra.push_str("    ");
        self.extra.push_str(line);
        self.extra.push('\n');
        self
    }

    /// The same settings with the IPv6 VIP.
    pub fn v6(self) -> Self {
        Self { vip: VIP6, ..self }
    }

    /// The keepalived.conf text.
    pub fn keepalived_conf(&self, name: &str) -> String {
        let prefix = if self.vip == VIP6 { 64 } else { 24 };
        let globals = &self.globals;
        let blocks = &self.blocks;
        format!(
            "global_defs {{\n    router_id {name}\n{globals}}}\n{blocks}\
             vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    \
             version {}\n    priority {}\n    advert_int {}\n{}    virtual_ipaddress {{\n        {}/{prefix}\n    }}\n}}\n",
            self.version, self.priority, self.advert_int, self.extra, self.vip
        )
    }
}

/// A router of the lab: its namespace, what runs it, and its running process.
#[derive(Debug)]
pub struct Router {
    /// d1, d2, ...
    pub name: String,
    /// Its namespace.
    pub ns: Netns,
    /// lbd or keepalived.
    pub kind: Kind,
    /// The lab's directory: configs, logs, sockets, pid files.
    pub dir: PathBuf,
    /// The running process (keepalived: its parent, leader of its process group).
    pub pid: Option<u32>,
    /// The VIP of the settings it last started with.
    pub vip: &'static str,
    /// More arguments for `lbd run` (`--no-vrrp-bpf`).
    pub lbd_args: Vec<String>,
}

impl Router {
    /// lbd's control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join(format!("{}.sock", self.name))
    }

    /// Starts the router with `settings` and waits until it runs (lbd: its control socket;
    /// keepalived: its VRRP process's pid file).
    pub fn start(&mut self, lab: &mut Lab, settings: &Settings) {
        self.vip = settings.vip;
        self.start_conf(lab, &settings.keepalived_conf(&self.name));
    }

    /// Starts the router on the keepalived.conf text `conf`.
    pub fn start_conf(&mut self, lab: &mut Lab, conf: &str) {
        assert!(self.pid.is_none(), "{} is already running", self.name);
        let text = conf;
        let conf = self.dir.join(format!("{}.conf", self.name));
        std::fs::write(&conf, text).expect("writing config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", self.name)))
            .expect("log file");
        let pid = match self.kind {
            Kind::Lbd => {
                let socket = self.socket();
                std::fs::remove_file(&socket).ok();
                let mut cmd = self.ns.command(crate::workspace_bin("lbd"));
                cmd.arg("run");
                // No data plane unless the router's own arguments choose one.
                if !self.lbd_args.iter().any(|a| a == "--dataplane") {
                    cmd.args(["--dataplane", "none"]);
                }
                cmd.arg("--config")
                    .arg(&conf)
                    .arg("--control-socket")
                    .arg(&socket)
                    .args(&self.lbd_args)
                    .env("RUST_LOG", "info")
                    .stdout(Stdio::null())
                    .stderr(log);
                // Its own process group, as keepalived's: a crash is a group SIGKILL for both.
                let pid = lab.spawn_group(&format!("lbd {}", self.name), cmd);
                wait_for_path(&socket, Duration::from_secs(20));
                pid
            }
            Kind::Keepalived => {
                let mut cmd = self.ns.command("keepalived");
                let pid_file = |suffix: &str| self.dir.join(format!("{}{suffix}.pid", self.name));
                // A crashed keepalived leaves its pid files behind, and refuses to start over
                // them ("daemon is already running"); a reboot clears /run.
                for suffix in ["", "_vrrp", "_chk", "_bfd"] {
                    std::fs::remove_file(pid_file(suffix)).ok();
                }
                cmd.args(["-n", "-l", "-D", "-P", "-f"])
                    .arg(&conf)
                    .arg("-p")
                    .arg(pid_file(""))
                    .arg("-r")
                    .arg(pid_file("_vrrp"))
                    .arg("-c")
                    .arg(pid_file("_chk"))
                    .arg("-b")
                    .arg(pid_file("_bfd"))
                    .stdout(log.try_clone().expect("log file"))
                    .stderr(log);
                let pid = lab.spawn_group(&format!("keepalived {}", self.name), cmd);
                wait_for_path(&pid_file("_vrrp"), Duration::from_secs(20));
                pid
            }
        };
        self.pid = Some(pid);
    }

    /// Stops the router with `signal` to its whole process group, as a crash or `systemctl
    /// stop` would.
    pub fn stop(&mut self, lab: &mut Lab, signal: &str) {
        let pid = self.pid.take().expect("router running");
        // keepalived's VRRP child is not the process the lab waits for: wait for it too.
        let child = std::fs::read_to_string(self.dir.join(format!("{}_vrrp.pid", self.name)))
            .ok()
            .filter(|_| self.kind == Kind::Keepalived)
            .and_then(|p| p.trim().parse::<u32>().ok());
        lab.stop(pid, signal);
        if let Some(child) = child {
            wait_until(
                "keepalived's VRRP process to exit",
                Duration::from_secs(10),
                || !Path::new(&format!("/proc/{child}")).exists(),
            );
        }
    }

    pub fn holds_vip(&self) -> bool {
        // On any interface: eth0, or a VMAC (`use_vmac`).
        let out = self.ns.run("ip", &["-o", "addr", "show"]);
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {}/", self.vip))
    }

    /// Removes the VIP a crashed router left behind (a reboot would).
    pub fn clear_vip(&self) {
        let prefix = if self.vip == VIP6 { 128 } else { 32 };
        // From any interface: eth0, or a VMAC.
        self.ns
            .ip(&["addr", "flush", "to", &format!("{}/{prefix}", self.vip)]);
    }

    /// lbd's view of its one instance (the first by name).
    pub fn status(&self) -> serde_json::Value {
        self.statuses()[0].clone()
    }

    /// lbd's view of every instance, by name.
    pub fn statuses(&self) -> Vec<serde_json::Value> {
        self.lbctl_status()["vrrp"]
            .as_array()
            .expect("vrrp instances")
            .clone()
    }

    /// lbd's whole `lbctl status --json`.
    pub fn lbctl_status(&self) -> serde_json::Value {
        assert_eq!(self.kind, Kind::Lbd, "only lbd has lbctl");
        crate::lbctl_status(&self.socket())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }
}

/// A LAN of routers, each of `kinds`, with addresses 192.0.2.1, .2, ...
pub fn lan(kinds: &[Kind]) -> (Lab, Netns, Vec<Router>) {
    crate::require_root();
    assert!(
        Command::new("keepalived")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            || !kinds.contains(&Kind::Keepalived),
        "keepalived is missing: run `cargo xtask setup`"
    );
    let mut lab = Lab::new();
    let names: Vec<String> = (1..=kinds.len()).map(|i| format!("d{i}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (switch, hosts) = lab.lan(&name_refs);
    let dir = lab.dir().to_path_buf();
    let routers = hosts
        .into_iter()
        .zip(kinds)
        .enumerate()
        .map(|(i, (ns, kind))| {
            ns.ip(&[
                "addr",
                "add",
                &format!("192.0.2.{}/24", i + 1),
                "dev",
                "eth0",
            ]);
            Router {
                name: names[i].clone(),
                ns,
                kind: *kind,
                dir: dir.clone(),
                pid: None,
                vip: VIP,
                lbd_args: Vec::new(),
            }
        })
        .collect();
    (lab, switch, routers)
}

/// Waits until exactly `master` of `routers` holds the VIP; on timeout, fails with every
/// router's log.
pub fn wait_master(routers: &[Router], master: usize, why: &str) {
    let deadline = Instant::now() + TAKEOVER;
    let settled = || {
        routers
            .iter()
            .enumerate()
            .all(|(i, r)| r.pid.is_none() || r.holds_vip() == (i == master))
    };
    while !settled() {
        if Instant::now() > deadline {
            let logs: Vec<String> = routers
                .iter()
                .map(|r| {
                    format!(
                        "--- {} ({:?}) holds VIP: {}\n{}",
                        r.name,
                        r.kind,
                        r.holds_vip(),
                        r.log()
                    )
                })
                .collect();
            panic!(
                "timed out after {TAKEOVER:?} waiting for {} alone to hold {VIP} ({why})\n{}",
                routers[master].name,
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts for `period` that `master` keeps the VIP and no other running router takes it.
pub fn assert_stays_master(routers: &[Router], master: usize, period: Duration) {
    let deadline = Instant::now() + period;
    while Instant::now() < deadline {
        for (i, r) in routers.iter().enumerate() {
            if r.pid.is_some() {
                assert_eq!(
                    r.holds_vip(),
                    i == master,
                    "{} {} the VIP while {} should be the only master\n{}",
                    r.name,
                    if i == master { "lost" } else { "took" },
                    routers[master].name,
                    r.log()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A frame a [`Capture`] recognized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A VRRP advert over IPv4 from `src` at `priority`.
    Advert {
        /// Sender.
        src: Ipv4Addr,
        /// Its priority (0: the sender is leaving).
        priority: u8,
    },
    /// A gratuitous ARP for `vip` from `mac`.
    Garp {
        /// The announced address.
        vip: Ipv4Addr,
        /// The sender's MAC.
        mac: [u8; 6],
    },
}

/// Records the VRRP adverts and gratuitous ARPs crossing every interface of a namespace,
/// incoming and outgoing, each with the time it was read: an AF_PACKET socket read by a
/// dedicated thread that does nothing else, so the times are within microseconds of the wire.
#[derive(Debug)]
pub struct Capture {
    frames: Arc<Mutex<Vec<(Instant, Seen)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    /// Starts capturing in `ns`; returns once the socket is open.
    pub fn start(ns: &Netns) -> Self {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (frames, stop) = (Arc::clone(&frames), Arc::clone(&stop));
            ns.spawn_within(move || {
                use socket2::{Domain, Protocol, Socket, Type};
                const ETH_P_ALL: u16 = 0x0003;
                let socket = Socket::new(
                    Domain::PACKET,
                    Type::RAW,
                    Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))),
                )
                .expect("AF_PACKET socket");
                // Real-time, so that its timestamps hold while a benchmark starves the CPUs
                // (best effort: without the privilege it runs as it is).
                let _realtime = crate::sys::set_realtime(50);
                socket
                    .set_read_timeout(Some(Duration::from_millis(20)))
                    .expect("SO_RCVTIMEO");
                socket.set_recv_buffer_size(8 << 20).expect("SO_RCVBUF");
                ready_tx.send(()).expect("capture ready");
                let mut buffer = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(len) = std::io::Read::read(&mut &socket, &mut buffer) else {
                        continue;
                    };
                    let at = Instant::now();
                    if let Some(seen) = recognize(&buffer[..len]) {
                        frames.lock().expect("capture lock").push((at, seen));
                    }
                }
            })
        };
        ready_rx.recv().expect("capture thread started");
        Self {
            frames,
            stop,
            thread: Some(thread),
        }
    }

    /// What was seen so far.
    pub fn frames(&self) -> Vec<(Instant, Seen)> {
        self.frames.lock().expect("capture lock").clone()
    }

    /// Stops capturing and returns everything seen.
    pub fn finish(mut self) -> Vec<(Instant, Seen)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("capture thread");
        }
        self.frames()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}

/// A VRRP advert over IPv4 or a gratuitous ARP in an Ethernet frame.
fn recognize(frame: &[u8]) -> Option<Seen> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let addr = |at: usize| -> Option<Ipv4Addr> {
        let b: [u8; 4] = frame.get(at..at + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(b))
    };
    match ethertype {
        0x0800 if *frame.get(23)? == 112 => {
            let ihl = usize::from(frame.get(14)? & 0x0f) * 4;
            Some(Seen::Advert {
                src: addr(26)?,
                priority: *frame.get(14 + ihl + 2)?,
            })
        }
        // A request whose sender and target protocol addresses are the same.
        0x0806 if frame.get(20..22)? == [0, 1] && addr(28)? == addr(38)? => Some(Seen::Garp {
            vip: addr(28)?,
            mac: frame.get(22..28)?.try_into().ok()?,
        }),
        _ => None,
    }
}

/// The MAC address of `interface` in `ns`.
pub fn mac_of(ns: &Netns, interface: &str) -> [u8; 6] {
    let out = ns.run("cat", &[&format!("/sys/class/net/{interface}/address")]);
    let text = String::from_utf8_lossy(&out.stdout);
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("hex MAC"))
        .collect();
    bytes.try_into().expect("6-byte MAC")
}
