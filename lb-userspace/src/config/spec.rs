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
    /// Virtual servers in file order.
    pub virtual_servers: Vec<VirtualServerSpec>,
    /// VRRP instances in file order.
    pub vrrp_instances: Vec<VrrpInstanceSpec>,
    /// The default VRRP version (keepalived's `global_defs { vrrp_version }`).
    pub vrrp_version: Option<At<i64>>,
    /// keepalived's `global_defs { router_id }`.
    pub router_id: Option<At<String>>,
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
}

/// A virtual server as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualServerSpec {
    /// Where its block starts.
    pub pos: Pos,
    /// VIP address text.
    pub address: At<String>,
    /// Port.
    pub port: At<i64>,
    /// `tcp`, `udp` or `sctp` (any case).
    pub protocol: Option<At<String>>,
    /// Scheduler name.
    pub scheduler: Option<At<String>>,
    /// `nat`, `dr` or `tun` (any case).
    pub forwarding: Option<At<String>>,
    /// Real servers.
    pub real_servers: Vec<RealServerSpec>,
}

/// A real server as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealServerSpec {
    /// Where its block starts.
    pub pos: Pos,
    /// Address text.
    pub address: At<String>,
    /// Port.
    pub port: At<i64>,
    /// Weight.
    pub weight: Option<At<i64>>,
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
}

impl Default for At<String> {
    fn default() -> Self {
        At::new(String::new(), Pos::default())
    }
}
