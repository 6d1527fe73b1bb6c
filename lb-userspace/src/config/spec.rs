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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spec {
    /// The `[dataplane]` table (TOML) or command-line choice (keepalived syntax).
    pub dataplane: Option<DataplaneSpec>,
    /// Virtual servers in file order.
    pub virtual_servers: Vec<VirtualServerSpec>,
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
