//! The validated desired state: what lbd is asked to run.
//!
//! Built only by [`crate::config`]; its types make illegal states unrepresentable (a weight out
//! of range, an XDP mode without an interface, a real server of the wrong address family), so
//! everything downstream can trust it.

mod lvs;

use std::net::IpAddr;

pub use lvs::*;

/// The whole desired state of one director.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    /// Which data plane programs the virtual servers.
    pub dataplane: Dataplane,
    /// Virtual servers, in configuration order. Shared: a reload that leaves one unchanged
    /// keeps the same allocation, so the layers after it tell unchanged from changed by
    /// pointer.
    pub virtual_servers: Vec<std::sync::Arc<VirtualServer>>,
    /// VRRP instances, in configuration order.
    pub vrrp_instances: Vec<VrrpInstance>,
    /// keepalived's `router_id`, shown in status.
    pub router_id: Option<String>,
    /// What VRRP instances share: scripts, tracked files, sync groups, notification.
    pub vrrp: VrrpGlobals,
    /// keepalived's `lvs_notify_fifo`: a FIFO that gets `VS` and `RS` lines.
    pub lvs_notify_fifo: Option<std::path::PathBuf>,
    /// IPVS settings that are not one virtual server's.
    pub ipvs: IpvsGlobals,
}

/// The VRRP settings and objects that are not one instance's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VrrpGlobals {
    /// `vrrp_script`s, tracked by instances' `track_script`.
    pub scripts: Vec<VrrpScript>,
    /// `vrrp_track_file`s, tracked by instances' `track_file`.
    pub track_files: Vec<TrackFile>,
    /// `vrrp_sync_group`s: instances that change state together.
    pub sync_groups: Vec<SyncGroup>,
    /// keepalived's `vrrp_notify_fifo`: a FIFO that gets one line per state change.
    pub notify_fifo: Option<std::path::PathBuf>,
    /// Who scripts run as unless they say otherwise (keepalived's `script_user`); `None`: the
    /// `keepalived_script` user if it exists, else `nobody`, never root by default.
    pub script_user: Option<ScriptUser>,
    /// keepalived's `vrrp_rt_priority`: the VRRP thread runs SCHED_RR at this priority (1-99),
    /// ahead of every ordinary task on the machine; `None`: an ordinary thread.
    pub rt_priority: Option<u8>,
}

/// A user, and optionally a group, to run a script as.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScriptUser {
    /// User name.
    pub user: String,
    /// Group name (default: the user's primary group).
    pub group: Option<String>,
}

/// A command to run: its argv, and who runs it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Script {
    /// argv: the program and its arguments.
    pub argv: Vec<String>,
    /// Who runs it (default: [`VrrpGlobals::script_user`]).
    pub user: Option<ScriptUser>,
}

/// keepalived's `vrrp_script`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VrrpScript {
    /// Its name.
    pub name: String,
    /// The command; exit status 0 is success.
    pub script: Script,
    /// Run every `interval` (default 1 s).
    pub interval: std::time::Duration,
    /// A run longer than this fails (default: the interval).
    pub timeout: std::time::Duration,
    /// Priority change: added on success when positive, on failure when negative; 0 means a
    /// failure puts the instance in FAULT.
    pub weight: i32,
    /// `reverse`: the weight applies the other way round.
    pub reverse: bool,
    /// Successes in a row to become good (default 1).
    pub rise: u32,
    /// Failures in a row to become bad (default 1).
    pub fall: u32,
    /// Start as failed rather than good.
    pub init_fail: bool,
}

/// keepalived's `vrrp_track_file`: a file holding a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackFile {
    /// Its name.
    pub name: String,
    /// The file.
    pub path: std::path::PathBuf,
    /// The value times this is added to the priority; 0: a non-zero value means FAULT.
    pub weight: i32,
    /// `reverse`: the value's sign is reversed.
    pub reverse: bool,
}

/// keepalived's `vrrp_sync_group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncGroup {
    /// Its name.
    pub name: String,
    /// Member instances (by name).
    pub members: Vec<String>,
    /// Scripts run on the group's transitions.
    pub notify: Notify,
}

/// Scripts run on transitions, keepalived's `notify_*`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    /// On becoming MASTER.
    pub master: Option<Script>,
    /// On becoming BACKUP.
    pub backup: Option<Script>,
    /// On becoming FAULT.
    pub fault: Option<Script>,
    /// On stopping.
    pub stop: Option<Script>,
    /// On every transition, with `INSTANCE|GROUP NAME STATE PRIORITY` appended.
    pub any: Option<Script>,
}

/// A tracked object of an instance: an interface, script or file by name, with the weight the
/// instance gives it (`None`: the object's own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Track {
    /// Interface, script or file name.
    pub name: String,
    /// The instance's weight for it.
    pub weight: Option<i32>,
    /// `reverse`.
    pub reverse: bool,
}

/// Gratuitous ARP / unsolicited NA after becoming MASTER (keepalived's `garp_master_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Garp {
    /// Announcements in each burst (default 5).
    pub repeat: u32,
    /// The second burst's delay after the first (default 5 s; zero: no second burst).
    pub delay: std::time::Duration,
    /// While MASTER, a burst every this long (default: never).
    pub refresh: Option<std::time::Duration>,
}

impl Default for Garp {
    fn default() -> Self {
        Self {
            repeat: 5,
            delay: std::time::Duration::from_secs(5),
            refresh: None,
        }
    }
}

/// Which data plane programs the virtual servers, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dataplane {
    /// Check and notify only: nothing is programmed.
    None,
    /// Kernel IPVS only (keepalived's model; no BPF at all).
    Ipvs,
    /// The XDP fast path only, on this interface.
    Xdp(XdpSettings),
    /// XDP in front, IPVS behind for everything XDP passes up.
    XdpIpvs(XdpSettings),
}

impl Dataplane {
    /// The XDP settings, when the mode has an XDP part.
    pub fn xdp(&self) -> Option<&XdpSettings> {
        match self {
            Dataplane::Xdp(x) | Dataplane::XdpIpvs(x) => Some(x),
            Dataplane::None | Dataplane::Ipvs => None,
        }
    }

    /// Whether the mode programs IPVS.
    pub fn uses_ipvs(&self) -> bool {
        matches!(self, Dataplane::Ipvs | Dataplane::XdpIpvs(_))
    }

    /// The name users write in the config and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Dataplane::None => "none",
            Dataplane::Ipvs => "ipvs",
            Dataplane::Xdp(_) => "xdp",
            Dataplane::XdpIpvs(_) => "xdp+ipvs",
        }
    }
}

/// Where and how the XDP program is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpSettings {
    /// Interface the program is attached to.
    pub interface: String,
    /// Attach mode.
    pub attach: XdpAttach,
    /// Slots of each VIP's Maglev table (a prime; default 65,537).
    pub ring_size: u32,
    /// VIPs the maps hold (default 512).
    pub max_vips: u32,
    /// Largest packet the encapsulating path sends (outer header included; default 1500).
    pub mtu: u32,
    /// Outer IPv4 source of encapsulated packets and its prefix length: the host bits come
    /// from the flow's hash. `None`: the interface's own address.
    pub encap_source_v4: Option<(std::net::Ipv4Addr, u8)>,
    /// Outer IPv6 source and prefix length, likewise.
    pub encap_source_v6: Option<(std::net::Ipv6Addr, u8)>,
    /// Where the link and maps are pinned for a restarted lbd; `None`: under /sys/fs/bpf, per
    /// network namespace and interface.
    pub pin_dir: Option<std::path::PathBuf>,
}

impl XdpSettings {
    /// `interface` in `attach` mode with every other setting at its default.
    pub fn new(interface: impl Into<String>, attach: XdpAttach) -> Self {
        Self {
            interface: interface.into(),
            attach,
            ring_size: lb_common::DEFAULT_RING_SIZE,
            max_vips: lb_common::MAX_VIPS,
            mtu: 1500,
            encap_source_v4: None,
            encap_source_v6: None,
            pin_dir: None,
        }
    }
}

/// XDP attach mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttach {
    /// Native (driver) mode where the driver has it, else generic; lbd says which it got.
    Auto,
    /// Native mode or fail.
    Native,
    /// Generic (SKB) mode.
    Generic,
}

/// L4 protocol of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP (IPVS only; the XDP path passes it up).
    Sctp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// Lower-case name, as in the TOML format.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A VRRP instance (keepalived's `vrrp_instance`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VrrpInstance {
    /// Its name (notify scripts and logs use it).
    pub name: String,
    /// The interface it runs on.
    pub interface: String,
    /// VRRP version.
    pub version: crate::vrrp::wire::Version,
    /// Virtual router id, 1-255.
    pub vrid: u8,
    /// Priority, 1-255 (255: the address owner).
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2: whole seconds).
    pub advert_int_cs: u16,
    /// Start active (keepalived's `state MASTER`).
    pub start_active: bool,
    /// Preempt a lower-priority active router (keepalived's default; `nopreempt` turns it off).
    pub preempt: bool,
    /// Delay before preempting (keepalived's `preempt_delay`).
    pub preempt_delay: std::time::Duration,
    /// The virtual addresses with their prefix lengths, all of one family.
    pub addresses: Vec<VirtualAddress>,
    /// v2 simple-password authentication (keepalived's `auth_type PASS`).
    pub auth_pass: Option<String>,
    /// The source address of adverts (default: the interface's primary address).
    pub unicast_src: Option<IpAddr>,
    /// Unicast peers; empty means multicast.
    pub unicast_peers: Vec<IpAddr>,
    /// How the VRRPv3 checksum over IPv4 is computed.
    pub v3_ipv4_checksum: crate::vrrp::wire::V3Ipv4Checksum,
    /// Scripts run on transitions.
    pub notify: Notify,
    /// Also notify (FIFO) priority changes: `MASTER_PRIORITY` / `BACKUP_PRIORITY` lines.
    pub notify_priority_changes: bool,
    /// Tracked interfaces: down means FAULT, or the weight when given.
    pub track_interfaces: Vec<Track>,
    /// Tracked `vrrp_script`s.
    pub track_scripts: Vec<Track>,
    /// Tracked `vrrp_track_file`s.
    pub track_files: Vec<Track>,
    /// Announcements after becoming MASTER.
    pub garp: Garp,
    /// keepalived's `use_vmac`: the VIPs live on a macvlan with the VRRP virtual MAC.
    pub vmac: Option<Vmac>,
}

/// A VRRP virtual MAC interface (keepalived's `use_vmac`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vmac {
    /// The macvlan's name (keepalived's default: `vrrp.VRID`, here `vrrp6.VRID` for IPv6).
    pub name: String,
    /// keepalived's `vmac_xmit_base`: adverts go out of the base interface, not the VMAC.
    pub xmit_base: bool,
}

/// A virtual address of a VRRP instance, with keepalived's `virtual_ipaddress` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualAddress {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length (keepalived's default: 32 or 128).
    pub prefix: u8,
    /// `dev`: the interface it goes on (default: the instance's).
    pub dev: Option<String>,
    /// `label` (IPv4).
    pub label: Option<String>,
    /// `scope`, as the kernel numbers it (0 global, 200 site, 253 link, 254 host).
    pub scope: Option<u8>,
    /// `brd` (IPv4).
    pub broadcast: Option<std::net::Ipv4Addr>,
}

impl VirtualAddress {
    /// An address with no options.
    pub fn new(addr: IpAddr, prefix: u8) -> Self {
        Self {
            addr,
            prefix,
            dev: None,
            label: None,
            scope: None,
            broadcast: None,
        }
    }
}
