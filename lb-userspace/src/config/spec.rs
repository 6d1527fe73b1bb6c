//! The unvalidated configuration tree both front-ends produce. Every value carries its position.

use super::Pos;

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct At<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub pos: Pos,
}

impl<T> At<T> {
    /// A value at `pos`.
    pub fn new(value: T, pos: Pos) -> Self {
        Self { value, pos }
    }
}

/// A whole configuration file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spec {
    /// The `[dataplane]` table (TOML) or command-line choice (keepalived syntax).
    pub dataplane: Option<DataplaneSpec>,
    /// keepalived's LVS statements (`virtual_server`, `virtual_server_group`, `SSL`), in file
    /// order; the TOML front-end maps its tables to the same statements.
    pub lvs: Vec<Statement>,
    /// VRRP instances in file order.
    pub vrrp_instances: Vec<VrrpInstanceSpec>,
    /// The default VRRP version (keepalived's `global_defs { vrrp_version }`).
    pub vrrp_version: Option<At<i64>>,
    /// keepalived's `global_defs { router_id }`.
    pub router_id: Option<At<String>>,
    /// `vrrp_script` blocks.
    pub vrrp_scripts: Vec<VrrpScriptSpec>,
    /// `vrrp_track_file` / `track_file` blocks.
    pub track_files: Vec<TrackFileSpec>,
    /// `vrrp_sync_group` blocks.
    pub sync_groups: Vec<SyncGroupSpec>,
    /// `global_defs { vrrp_notify_fifo }` (or `notify_fifo`, which also gets VRRP lines).
    pub notify_fifo: Option<At<String>>,
    /// `global_defs { lvs_notify_fifo }` (or `notify_fifo`): `VS`/`RS` lines.
    pub lvs_notify_fifo: Option<At<String>>,
    /// `global_defs { script_user USER [GROUP] }`.
    pub script_user: Option<(At<String>, Option<At<String>>)>,
    /// `global_defs { vrrp_garp_master_delay }` in seconds.
    pub garp_master_delay: Option<At<f64>>,
    /// `global_defs { vrrp_garp_master_repeat }`.
    pub garp_master_repeat: Option<At<i64>>,
    /// `global_defs { vrrp_garp_master_refresh }` in seconds (0: never).
    pub garp_master_refresh: Option<At<f64>>,
    /// `global_defs { vrrp_rt_priority }`: the VRRP thread's real-time priority.
    pub vrrp_rt_priority: Option<At<i64>>,
    /// `virtual_server` blocks a reload's parse cache set apart (see
    /// [`super::ParseCache`]); each has a [`Statement::placeholder`] in `lvs` where it stands.
    pub lvs_blocks: Vec<LvsBlock>,
}

/// A `virtual_server` block the parse cache set apart.
#[derive(Clone, Debug, PartialEq)]
pub enum LvsBlock {
    /// Its text is the same as in the last load, in the same context: what it read to then.
    Read(std::sync::Arc<crate::model::VirtualServer>),
    /// New or changed: its statement, to read.
    Parse(Statement),
}

/// A command as written: the command line (split like a shell line, quotes honoured), and
/// the user and group to run it as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScriptSpec {
    /// The command line.
    pub command: At<String>,
    /// User to run as.
    pub user: Option<At<String>>,
    /// Group to run as.
    pub group: Option<At<String>>,
}

/// An entry of `track_interface`, `track_script` or `track_file`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackSpec {
    /// The interface, script or file name.
    pub name: At<String>,
    /// `weight W`.
    pub weight: Option<At<i64>>,
    /// `reverse` / `noreverse`.
    pub reverse: Option<At<bool>>,
}

/// A `vrrp_script` block.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VrrpScriptSpec {
    /// Where its block starts.
    pub pos: Pos,
    /// Its name.
    pub name: At<String>,
    /// `script`.
    pub script: Option<ScriptSpec>,
    /// `interval` in seconds.
    pub interval: Option<At<f64>>,
    /// `timeout` in seconds.
    pub timeout: Option<At<f64>>,
    /// `weight`.
    pub weight: Option<At<i64>>,
    /// `weight W reverse`.
    pub reverse: Option<At<bool>>,
    /// `rise`.
    pub rise: Option<At<i64>>,
    /// `fall`.
    pub fall: Option<At<i64>>,
    /// `init_fail`.
    pub init_fail: Option<At<bool>>,
}

/// A `vrrp_track_file` block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackFileSpec {
    /// Where its block starts.
    pub pos: Pos,
    /// Its name.
    pub name: At<String>,
    /// `file`.
    pub file: Option<At<String>>,
    /// `weight`.
    pub weight: Option<At<i64>>,
    /// `weight W reverse`.
    pub reverse: Option<At<bool>>,
}

/// A `vrrp_sync_group` block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncGroupSpec {
    /// Where its block starts.
    pub pos: Pos,
    /// Its name.
    pub name: At<String>,
    /// Member instances.
    pub group: Vec<At<String>>,
    /// Notify commands.
    pub notify: NotifySpec,
}

/// `notify_master|backup|fault|stop` and the generic `notify`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifySpec {
    /// `notify_master`.
    pub master: Option<ScriptSpec>,
    /// `notify_backup`.
    pub backup: Option<ScriptSpec>,
    /// `notify_fault`.
    pub fault: Option<ScriptSpec>,
    /// `notify_stop`.
    pub stop: Option<ScriptSpec>,
    /// `notify`: gets `INSTANCE|GROUP NAME STATE PRIORITY` appended.
    pub any: Option<ScriptSpec>,
}

/// Data-plane settings as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataplaneSpec {
    /// Where the table starts.
    pub pos: Pos,
    /// `none`, `ipvs`, `xdp` or `xdp+ipvs`.
    pub mode: Option<At<String>>,
    /// Interface for XDP.
    pub xdp_interface: Option<At<String>>,
    /// `auto`, `native` or `generic`.
    pub xdp_attach: Option<At<String>>,
    /// Slots of each VIP's Maglev table.
    pub xdp_ring_size: Option<At<i64>>,
    /// VIPs the XDP maps hold.
    pub xdp_max_vips: Option<At<i64>>,
    /// Largest encapsulated packet.
    pub xdp_mtu: Option<At<i64>>,
    /// Outer IPv4 source prefix of encapsulated packets.
    pub xdp_encap_source: Option<At<String>>,
    /// Outer IPv6 source prefix of encapsulated packets.
    pub xdp_encap_source6: Option<At<String>>,
    /// Where the program's link and maps are pinned (on a bpffs).
    pub xdp_pin_dir: Option<At<String>>,
}

/// A statement: a keyword, its arguments, and its block if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The first word.
    pub keyword: At<String>,
    /// The other words on its line.
    pub args: Vec<At<String>>,
    /// The statements inside its braces.
    pub block: Option<Vec<Statement>>,
}

/// The file index of a placeholder's position: no file has it (a configuration reads far
/// fewer than 2^32 files).
const PLACEHOLDER_FILE: u32 = u32::MAX;

impl Statement {
    /// A `virtual_server` standing for [`Spec::lvs_blocks`]`[index]`, where that block was.
    pub fn placeholder(index: usize) -> Self {
        let pos = Pos {
            file: PLACEHOLDER_FILE,
            line: u32::try_from(index).unwrap_or(u32::MAX),
            col: 0,
        };
        Self {
            keyword: At::new("virtual_server".to_owned(), pos),
            args: Vec::new(),
            block: None,
        }
    }

    /// The index into [`Spec::lvs_blocks`] of a placeholder.
    pub fn placeholder_index(&self) -> Option<usize> {
        (self.keyword.pos.file == PLACEHOLDER_FILE).then_some(self.keyword.pos.line as usize)
    }
}

/// A VRRP instance as written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VrrpInstanceSpec {
    /// Where its block starts.
    pub pos: Pos,
    /// Its name.
    pub name: At<String>,
    /// Interface.
    pub interface: Option<At<String>>,
    /// `MASTER` or `BACKUP` (any case).
    pub state: Option<At<String>>,
    /// VRID.
    pub virtual_router_id: Option<At<i64>>,
    /// Priority.
    pub priority: Option<At<i64>>,
    /// Advertisement interval in seconds.
    pub advert_int: Option<At<f64>>,
    /// VRRP version (2 or 3).
    pub version: Option<At<i64>>,
    /// Preempt (`nopreempt` writes false).
    pub preempt: Option<At<bool>>,
    /// Preemption delay in seconds.
    pub preempt_delay: Option<At<f64>>,
    /// `ADDR[/PREFIX]` entries.
    pub virtual_ipaddress: Vec<At<String>>,
    /// `PASS` (AH is not implemented).
    pub auth_type: Option<At<String>>,
    /// The password.
    pub auth_pass: Option<At<String>>,
    /// Source address of adverts.
    pub unicast_src_ip: Option<At<String>>,
    /// Unicast peers.
    pub unicast_peer: Vec<At<String>>,
    /// keepalived's `v3_checksum_as_v2`: RFC 9568's VRRPv3/IPv4 checksum.
    pub v3_checksum_as_v2: Option<At<bool>>,
    /// Notify commands.
    pub notify: NotifySpec,
    /// `notify_priority_changes`.
    pub notify_priority_changes: Option<At<bool>>,
    /// `track_interface` entries.
    pub track_interface: Vec<TrackSpec>,
    /// `track_script` entries.
    pub track_script: Vec<TrackSpec>,
    /// `track_file` entries.
    pub track_file: Vec<TrackSpec>,
    /// `garp_master_delay` in seconds.
    pub garp_master_delay: Option<At<f64>>,
    /// `garp_master_repeat`.
    pub garp_master_repeat: Option<At<i64>>,
    /// `garp_master_refresh` in seconds.
    pub garp_master_refresh: Option<At<f64>>,
    /// `use_vmac [NAME]`: the name, empty for the default.
    pub use_vmac: Option<At<String>>,
    /// `vmac_xmit_base`.
    pub vmac_xmit_base: Option<At<bool>>,
    /// keepalived 1.x's `lvs_sync_daemon_interface IFACE` (deprecated): the global
    /// `lvs_sync_daemon IFACE INSTANCE`.
    pub lvs_sync_daemon_interface: Option<At<String>>,
}

impl Default for At<String> {
    fn default() -> Self {
        At::new(String::new(), Pos::default())
    }
}
