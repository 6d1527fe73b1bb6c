//! Virtual servers, real servers and their health checks, as keepalived's `virtual_server`
//! blocks describe them, with every default already applied.

use std::{
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    path::PathBuf,
    time::Duration,
};

use super::{Protocol, Script};

/// keepalived's global IPVS settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpvsGlobals {
    /// `lvs_timeouts`: connection timeouts set at start.
    pub timeouts: Option<IpvsTimeouts>,
    /// `lvs_flush`: empty the whole IPVS table at start.
    pub flush_at_start: bool,
    /// What happens to IPVS at stop.
    pub on_stop: OnStop,
    /// `lvs_sync_daemon`: IPVS connection synchronisation, master while a VRRP instance is.
    pub sync_daemon: Option<SyncDaemon>,
}

/// keepalived's `lvs_sync_daemon IFACE INSTANCE [id N] [maxlen N] [port N] [ttl N] [group IP]`:
/// the kernel's connection-sync daemon runs as backup, and as master while `instance` is
/// MASTER, so the new master's IPVS knows the connections the old one had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncDaemon {
    /// Interface the sync messages go out of and come in on.
    pub interface: String,
    /// The VRRP instance it follows.
    pub instance: String,
    /// Sync id (default 0: any).
    pub sync_id: u32,
    /// Largest sync message (default: the kernel's).
    pub maxlen: Option<u16>,
    /// Multicast port (default: the kernel's 8848).
    pub port: Option<u16>,
    /// Multicast TTL (default: the kernel's 1).
    pub ttl: Option<u8>,
    /// Multicast group (default: the kernel's 224.0.0.81).
    pub group: Option<IpAddr>,
}

/// `lvs_timeouts tcp N tcpfin N udp N` in seconds (0: leave the kernel's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpvsTimeouts {
    /// Established TCP.
    pub tcp: u32,
    /// TCP after a FIN.
    pub tcpfin: u32,
    /// UDP.
    pub udp: u32,
}

/// What lbd does to IPVS when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnStop {
    /// Remove the services it owns, as keepalived does (`lvs_flush_on_stop VS`).
    #[default]
    Release,
    /// Empty the whole table (`lvs_flush_on_stop`).
    FlushAll,
    /// Leave everything (`lbd run --dont-release-ipvs`, keepalived's `-I`): a restarted lbd
    /// adopts it without touching a connection.
    Keep,
}

/// How IPVS forwards to a real server (keepalived's `lb_kind` / `lvs_method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Forwarding {
    /// Masquerading (NAT).
    Nat,
    /// Direct routing (same L2).
    Dr,
    /// A tunnel to the real server.
    Tun(Tunnel),
}

impl Forwarding {
    /// Lower-case name, as in the TOML format.
    pub fn name(self) -> &'static str {
        match self {
            Forwarding::Nat => "nat",
            Forwarding::Dr => "dr",
            Forwarding::Tun(_) => "tun",
        }
    }
}

/// IPVS tunnel options (`lvs_method TUN type ipip|gue port N|gre [nocsum|csum|remcsum]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tunnel {
    /// Encapsulation.
    pub kind: TunnelKind,
    /// Checksum option (GUE and GRE).
    pub checksum: TunnelChecksum,
}

/// IPVS tunnel encapsulation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    /// IP in IP (the default).
    #[default]
    Ipip,
    /// Generic UDP encapsulation to this port.
    Gue(u16),
    /// GRE.
    Gre,
}

/// IPVS tunnel checksum option.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TunnelChecksum {
    /// No checksum (the default).
    #[default]
    None,
    /// Outer checksum.
    Csum,
    /// Remote checksum offload.
    Remcsum,
}

/// An IPVS scheduler name (rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduler(String);

impl Scheduler {
    /// The schedulers Linux IPVS ships.
    pub const KNOWN: [&'static str; 14] = [
        "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
        "twos",
    ];

    /// A scheduler, if `name` is one the kernel has.
    pub fn new(name: &str) -> Option<Self> {
        Self::KNOWN.contains(&name).then(|| Self(name.to_owned()))
    }

    /// The name IPVS knows it by.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl Default for Scheduler {
    /// keepalived's default, `wlc`.
    fn default() -> Self {
        Self("wlc".to_owned())
    }
}

/// A real-server weight: 0 (drained) to 65535, as keepalived allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Weight(u16);

impl Weight {
    /// Drained: no new connections.
    pub const ZERO: Weight = Weight(0);

    /// A weight, if in range.
    pub fn new(value: i64) -> Option<Self> {
        u16::try_from(value).ok().map(Self)
    }

    /// `value` clamped into range.
    pub fn saturating(value: i64) -> Self {
        Self(value.clamp(0, i64::from(u16::MAX)) as u16)
    }

    /// The weight.
    pub fn get(self) -> u32 {
        u32::from(self.0)
    }
}

impl Default for Weight {
    /// keepalived's default weight, 1.
    fn default() -> Self {
        Self(1)
    }
}

/// Address family of a firewall-mark service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// What identifies one IPVS service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    /// VIP, port (0: every port) and protocol.
    Addr {
        /// VIP and port.
        addr: SocketAddr,
        /// L4 protocol.
        protocol: Protocol,
    },
    /// A firewall mark.
    Fwmark {
        /// The mark.
        mark: u32,
        /// Which family's packets.
        family: Family,
    },
}

impl ServiceKey {
    /// The family of the service's packets.
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr { addr, .. } => Family::of(addr.ip()),
            ServiceKey::Fwmark { family, .. } => *family,
        }
    }
}

impl std::fmt::Display for ServiceKey {
    /// keepalived's notation: `[192.0.2.1]:tcp:80`, `FWM 5`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceKey::Addr { addr, protocol } => {
                write!(f, "[{}]:{}:{}", addr.ip(), protocol.name(), addr.port())
            }
            ServiceKey::Fwmark { mark, .. } => write!(f, "FWM {mark}"),
        }
    }
}

/// IPVS persistence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persistence {
    /// Seconds a client sticks to its real server (keepalived's default 360 s).
    pub timeout: u32,
    /// `persistence_granularity`: the client netmask, as a prefix length.
    pub granularity: Option<u8>,
    /// `persistence_engine` (IPVS's `sip`).
    pub engine: Option<String>,
}

/// IPVS scheduler flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerFlags {
    /// `flag-1` (`sh-fallback`, `mh-fallback`).
    pub flag1: bool,
    /// `flag-2` (`sh-port`, `mh-port`).
    pub flag2: bool,
    /// `flag-3`.
    pub flag3: bool,
}

/// The server used while a virtual server has lost quorum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SorryServer {
    /// Address and port.
    pub addr: SocketAddr,
    /// `sorry_server_lvs_method` (default: the virtual server's).
    pub forwarding: Forwarding,
    /// `sorry_server_inhibit`: kept at weight 0 while unused rather than removed.
    pub inhibit: bool,
}

/// A virtual server: one IPVS service, or one per member of a `virtual_server_group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualServer {
    /// keepalived's name for it in notifications: `[192.0.2.1]:tcp:80`, `[GROUP]:80`, `FWM 5`.
    pub name: String,
    /// The services it programs (several for a group).
    pub services: Vec<ServiceKey>,
    /// L4 protocol (also what the checkers of a firewall-mark service speak).
    pub protocol: Protocol,
    /// IPVS scheduler.
    pub scheduler: Scheduler,
    /// Scheduler flags.
    pub scheduler_flags: SchedulerFlags,
    /// `ops`: one-packet scheduling (UDP).
    pub one_packet: bool,
    /// Forwarding method of its real servers unless they say otherwise.
    pub forwarding: Forwarding,
    /// Persistence.
    pub persistence: Option<Persistence>,
    /// The sum of live real servers' weights needed to be up (keepalived's default 1).
    pub quorum: u32,
    /// Hysteresis around the quorum (default 0).
    pub hysteresis: u32,
    /// Run when quorum is gained.
    pub quorum_up: Option<Script>,
    /// Run when quorum is lost.
    pub quorum_down: Option<Script>,
    /// Used while quorum is lost.
    pub sorry_server: Option<SorryServer>,
    /// `ha_suspend`: checkers run only while one of the service addresses is local.
    pub ha_suspend: bool,
    /// `omega`: run down notifiers and quorum_down when lbd stops.
    pub omega: bool,
    /// Real servers.
    pub real_servers: Vec<RealServer>,
}

impl VirtualServer {
    /// A virtual server for one address with keepalived's defaults and no real servers.
    pub fn new(addr: SocketAddr, protocol: Protocol) -> Self {
        let key = ServiceKey::Addr { addr, protocol };
        Self {
            name: key.to_string(),
            services: vec![key],
            protocol,
            scheduler: Scheduler::default(),
            scheduler_flags: SchedulerFlags::default(),
            one_packet: false,
            forwarding: Forwarding::Nat,
            persistence: None,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            sorry_server: None,
            ha_suspend: false,
            omega: false,
            real_servers: Vec::new(),
        }
    }
}

/// A real server of a virtual server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealServer {
    /// Address and port.
    pub addr: SocketAddr,
    /// Configured weight.
    pub weight: Weight,
    /// Forwarding method.
    pub forwarding: Forwarding,
    /// IPVS upper connection threshold (0: none).
    pub upper_threshold: u32,
    /// IPVS lower connection threshold (0: none).
    pub lower_threshold: u32,
    /// Run when it comes up.
    pub notify_up: Option<Script>,
    /// Run when it goes down.
    pub notify_down: Option<Script>,
    /// `inhibit_on_failure`: a dead server stays at weight 0 rather than being removed.
    pub inhibit_on_failure: bool,
    /// Its health checks; up only when all are up (none: always up).
    pub checkers: Vec<Checker>,
}

impl RealServer {
    /// A real server with keepalived's defaults and no checks.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            weight: Weight::default(),
            forwarding: Forwarding::Nat,
            upper_threshold: 0,
            lower_threshold: 0,
            notify_up: None,
            notify_down: None,
            inhibit_on_failure: false,
            checkers: Vec::new(),
        }
    }
}

/// One health check of a real server. Two real servers (of different virtual servers) with
/// equal checkers share one probe: equality is the sharing key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Checker {
    /// What is probed, and how.
    pub probe: Probe,
    /// When.
    pub timing: Timing,
    /// `alpha`: start down until the first success.
    pub alpha: bool,
    /// Successes in a row to come up (lbd's `rise`, default 1).
    pub rise: u32,
    /// Log every failure, not only transitions.
    pub log_all_failures: bool,
}

impl Checker {
    /// Whether `other` is the same probe: equal in everything but `alpha`, which only sets
    /// where a pool starts.
    pub fn same_probe(&self, other: &Self) -> bool {
        self.probe == other.probe
            && self.timing == other.timing
            && self.rise == other.rise
            && self.log_all_failures == other.log_all_failures
    }
}

/// Checker timing, keepalived's names and defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timing {
    /// Between probes (default 60 s).
    pub delay_loop: Duration,
    /// A probe's time limit (default 5 s).
    pub timeout: Duration,
    /// Failed retries before an up checker goes down (default 1; DNS 3).
    pub retry: u32,
    /// Between retries (default 1 s; HTTP 3 s; DNS the delay_loop).
    pub delay_before_retry: Duration,
    /// The first probe is at a random time within this (default: the delay_loop).
    pub warmup: Duration,
    /// After a failure, a down checker probes every delay_before_retry (HTTP's `fast_recovery`).
    pub fast_recovery: bool,
}

/// Where a probe goes and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// `connect_ip`:`connect_port` (default: the real server's).
    pub addr: SocketAddr,
    /// `bindto`: source address.
    pub bind_addr: Option<IpAddr>,
    /// `bind_port`: source port.
    pub bind_port: Option<u16>,
    /// `bind_if`: the interface (also the scope of a link-local address).
    pub bind_if: Option<String>,
    /// `fwmark`: SO_MARK on the probe's socket.
    pub fwmark: Option<u32>,
}

/// A health probe.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Probe {
    /// Where.
    pub target: Target,
    /// What.
    pub kind: ProbeKind,
}

/// The kinds of probe keepalived has.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// `TCP_CHECK`: a connection is accepted.
    Tcp,
    /// `HTTP_GET` / `SSL_GET`.
    Http(HttpProbe),
    /// `SMTP_CHECK`: greeting, HELO, QUIT.
    Smtp {
        /// `helo_name` (default: this host's name).
        helo_name: Option<String>,
    },
    /// `DNS_CHECK`: a query over UDP gets an answer of the type asked.
    Dns {
        /// Record type, by name (A, NS, CNAME, SOA, MX, TXT, AAAA).
        record_type: String,
        /// Query name (default `.`).
        name: String,
    },
    /// `UDP_CHECK`.
    Udp(UdpProbe),
    /// `PING_CHECK`: ICMP echo.
    Ping,
    /// `MISC_CHECK`: an external program.
    Misc(MiscProbe),
    /// `FILE_CHECK`: a number in a file.
    File(FileProbe),
}

impl ProbeKind {
    /// keepalived's block name.
    pub fn name(&self) -> &'static str {
        match self {
            ProbeKind::Tcp => "TCP_CHECK",
            ProbeKind::Http(h) if h.tls.is_some() => "SSL_GET",
            ProbeKind::Http(_) => "HTTP_GET",
            ProbeKind::Smtp { .. } => "SMTP_CHECK",
            ProbeKind::Dns { .. } => "DNS_CHECK",
            ProbeKind::Udp(_) => "UDP_CHECK",
            ProbeKind::Ping => "PING_CHECK",
            ProbeKind::Misc(_) => "MISC_CHECK",
            ProbeKind::File(_) => "FILE_CHECK",
        }
    }
}

/// `HTTP_GET` / `SSL_GET`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpProbe {
    /// TLS (SSL_GET).
    pub tls: Option<TlsProbe>,
    /// `http_protocol`.
    pub version: HttpVersion,
    /// Every URL must pass.
    pub urls: Vec<UrlCheck>,
    /// Host header unless a URL gives its own (default: the target address).
    pub virtualhost: Option<String>,
}

/// `http_protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HttpVersion {
    /// `1.0` (keepalived's default).
    #[default]
    Http10,
    /// `1.0C`: HTTP/1.0 with `Connection: close`.
    Http10Close,
    /// `1.1`.
    Http11,
}

/// TLS settings of an `SSL_GET` (keepalived's global `SSL` block plus `enable_sni`/`sni_name`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsProbe {
    /// Server name sent (None: no SNI, keepalived's default).
    pub sni: Option<String>,
    /// CA file that verifies the server (None: any certificate, as keepalived).
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM).
    pub certificate: Option<PathBuf>,
    /// Client key (PEM).
    pub key: Option<PathBuf>,
}

/// One `url` block.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UrlCheck {
    /// Path and query.
    pub path: String,
    /// MD5 of the body (keepalived's `genhash`).
    pub digest: Option<[u8; 16]>,
    /// Accepted status codes (default 200-299).
    pub status: Vec<RangeInclusive<u16>>,
    /// Host header for this URL.
    pub virtualhost: Option<String>,
    /// A regular expression the body must (or must not) match.
    pub regex: Option<BodyRegex>,
}

/// `regex` with its options.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BodyRegex {
    /// The pattern (validated at load).
    pub pattern: String,
    /// `regex_no_match`: success when it does not match.
    pub no_match: bool,
    /// `regex_options caseless`.
    pub caseless: bool,
    /// `regex_min_offset`: the match starts at or after this byte of the body.
    pub min_offset: usize,
    /// `regex_max_offset`: the match starts before this byte.
    pub max_offset: Option<usize>,
}

/// `UDP_CHECK`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UdpProbe {
    /// `payload` (hex; default one zero byte).
    pub payload: Vec<u8>,
    /// `require_reply`: the reply must start with this; `None` in a nibble matches anything.
    pub require_reply: Option<Vec<(Option<u8>, Option<u8>)>>,
    /// `min_reply_length`.
    pub min_reply_length: usize,
    /// `max_reply_length` (default 255).
    pub max_reply_length: usize,
}

/// `MISC_CHECK`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MiscProbe {
    /// `misc_path` and who runs it (`user`).
    pub script: Script,
    /// `misc_dynamic`: exit codes 2-255 set the weight to code - 2.
    pub dynamic: bool,
}

/// `FILE_CHECK`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileProbe {
    /// The tracked file's path (from `track_file NAME`).
    pub path: PathBuf,
    /// Multiplier of the file's value (0: non-zero means down).
    pub weight: i32,
    /// `reverse`.
    pub reverse: bool,
    /// `dynamic`: the value times the weight is added to the real server's weight.
    pub dynamic: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_bounded_like_keepalived() {
        assert_eq!(Weight::new(0).map(Weight::get), Some(0));
        assert_eq!(Weight::new(65535).map(Weight::get), Some(65535));
        assert_eq!(Weight::new(65536), None);
        assert_eq!(Weight::new(-1), None);
        assert_eq!(Weight::default().get(), 1);
        assert_eq!(Weight::saturating(-5), Weight::ZERO);
        assert_eq!(Weight::saturating(70_000).get(), 65535);
    }

    #[test]
    fn only_kernel_schedulers_exist() {
        assert_eq!(
            Scheduler::new("mh").map(|s| s.name().to_owned()),
            Some("mh".to_owned())
        );
        assert!(Scheduler::new("roundrobin").is_none());
        assert_eq!(Scheduler::default().name(), "wlc");
    }

    #[test]
    fn services_print_as_keepalived_names_them() {
        let v4 = ServiceKey::Addr {
            addr: "192.0.2.1:80".parse().unwrap(),
            protocol: Protocol::Tcp,
        };
        let v6 = ServiceKey::Addr {
            addr: "[2001:db8::1]:53".parse().unwrap(),
            protocol: Protocol::Udp,
        };
        let mark = ServiceKey::Fwmark {
            mark: 5,
            family: Family::V4,
        };
        assert_eq!(v4.to_string(), "[192.0.2.1]:tcp:80");
        assert_eq!(v6.to_string(), "[2001:db8::1]:udp:53");
        assert_eq!(mark.to_string(), "FWM 5");
    }
}
