//! The IPVS generic-netlink message model, named as in `linux/ip_vs.h`. Pure: builds and reads
//! attribute lists, never touches a socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use neli::{
    consts::genl::{Cmd, NlAttrType},
    err::{DeError, SerError},
    genl::{AttrTypeBuilder, GenlAttrHandle, Nlattr, NlattrBuilder},
    neli_enum,
    types::Buffer,
};

/// `IPVS_GENL_NAME`.
pub const IPVS_GENL_NAME: &str = "IPVS";
/// `IPVS_GENL_VERSION`.
pub const IPVS_GENL_VERSION: u8 = 1;

/// `enum { IPVS_CMD_* }`.
#[neli_enum(serialized_type = "u8")]
pub enum IpvsCmd {
    /// IPVS_CMD_UNSPEC
    Unspec = 0,
    /// IPVS_CMD_NEW_SERVICE
    NewService = 1,
    /// IPVS_CMD_SET_SERVICE
    SetService = 2,
    /// IPVS_CMD_DEL_SERVICE
    DelService = 3,
    /// IPVS_CMD_GET_SERVICE
    GetService = 4,
    /// IPVS_CMD_NEW_DEST
    NewDest = 5,
    /// IPVS_CMD_SET_DEST
    SetDest = 6,
    /// IPVS_CMD_DEL_DEST
    DelDest = 7,
    /// IPVS_CMD_GET_DEST
    GetDest = 8,
    /// IPVS_CMD_NEW_DAEMON
    NewDaemon = 9,
    /// IPVS_CMD_DEL_DAEMON
    DelDaemon = 10,
    /// IPVS_CMD_GET_DAEMON
    GetDaemon = 11,
    /// IPVS_CMD_SET_CONFIG
    SetConfig = 12,
    /// IPVS_CMD_GET_CONFIG
    GetConfig = 13,
    /// IPVS_CMD_SET_INFO
    SetInfo = 14,
    /// IPVS_CMD_GET_INFO
    GetInfo = 15,
    /// IPVS_CMD_ZERO
    Zero = 16,
    /// IPVS_CMD_FLUSH
    Flush = 17,
}
impl Cmd for IpvsCmd {}

/// `enum { IPVS_CMD_ATTR_* }`: the top-level attributes of a message.
#[neli_enum(serialized_type = "u16")]
pub enum IpvsCmdAttr {
    /// IPVS_CMD_ATTR_UNSPEC
    Unspec = 0,
    /// IPVS_CMD_ATTR_SERVICE (nested `IPVS_SVC_ATTR_*`)
    Service = 1,
    /// IPVS_CMD_ATTR_DEST (nested `IPVS_DEST_ATTR_*`)
    Dest = 2,
    /// IPVS_CMD_ATTR_DAEMON
    Daemon = 3,
    /// IPVS_CMD_ATTR_TIMEOUT_TCP
    TimeoutTcp = 4,
    /// IPVS_CMD_ATTR_TIMEOUT_TCP_FIN
    TimeoutTcpFin = 5,
    /// IPVS_CMD_ATTR_TIMEOUT_UDP
    TimeoutUdp = 6,
}
impl NlAttrType for IpvsCmdAttr {}

/// `enum { IPVS_SVC_ATTR_* }`.
#[neli_enum(serialized_type = "u16")]
pub enum IpvsSvcAttr {
    /// IPVS_SVC_ATTR_UNSPEC
    Unspec = 0,
    /// IPVS_SVC_ATTR_AF (u16)
    Af = 1,
    /// IPVS_SVC_ATTR_PROTOCOL (u16)
    Protocol = 2,
    /// IPVS_SVC_ATTR_ADDR (union nf_inet_addr, 16 bytes)
    Addr = 3,
    /// IPVS_SVC_ATTR_PORT (be16)
    Port = 4,
    /// IPVS_SVC_ATTR_FWMARK (u32)
    Fwmark = 5,
    /// IPVS_SVC_ATTR_SCHED_NAME (string)
    SchedName = 6,
    /// IPVS_SVC_ATTR_FLAGS (struct ip_vs_flags: u32 flags, u32 mask)
    Flags = 7,
    /// IPVS_SVC_ATTR_TIMEOUT (u32, seconds)
    Timeout = 8,
    /// IPVS_SVC_ATTR_NETMASK (u32)
    Netmask = 9,
    /// IPVS_SVC_ATTR_STATS (nested)
    Stats = 10,
    /// IPVS_SVC_ATTR_PE_NAME (string)
    PeName = 11,
    /// IPVS_SVC_ATTR_STATS64 (nested)
    Stats64 = 12,
}
impl NlAttrType for IpvsSvcAttr {}

/// `enum { IPVS_DEST_ATTR_* }`.
#[neli_enum(serialized_type = "u16")]
pub enum IpvsDestAttr {
    /// IPVS_DEST_ATTR_UNSPEC
    Unspec = 0,
    /// IPVS_DEST_ATTR_ADDR (16 bytes)
    Addr = 1,
    /// IPVS_DEST_ATTR_PORT (be16)
    Port = 2,
    /// IPVS_DEST_ATTR_FWD_METHOD (u32)
    FwdMethod = 3,
    /// IPVS_DEST_ATTR_WEIGHT (u32)
    Weight = 4,
    /// IPVS_DEST_ATTR_U_THRESH (u32)
    UThresh = 5,
    /// IPVS_DEST_ATTR_L_THRESH (u32)
    LThresh = 6,
    /// IPVS_DEST_ATTR_ACTIVE_CONNS (u32)
    ActiveConns = 7,
    /// IPVS_DEST_ATTR_INACT_CONNS (u32)
    InactConns = 8,
    /// IPVS_DEST_ATTR_PERSIST_CONNS (u32)
    PersistConns = 9,
    /// IPVS_DEST_ATTR_STATS (nested)
    Stats = 10,
    /// IPVS_DEST_ATTR_ADDR_FAMILY (u16)
    AddrFamily = 11,
    /// IPVS_DEST_ATTR_STATS64 (nested)
    Stats64 = 12,
    /// IPVS_DEST_ATTR_TUN_TYPE (u8)
    TunType = 13,
    /// IPVS_DEST_ATTR_TUN_PORT (be16)
    TunPort = 14,
    /// IPVS_DEST_ATTR_TUN_FLAGS (u16)
    TunFlags = 15,
}
impl NlAttrType for IpvsDestAttr {}

/// `enum { IPVS_STATS_ATTR_* }`: in `IPVS_*_ATTR_STATS` the counters are u32 (bytes u64),
/// in `IPVS_*_ATTR_STATS64` all u64.
#[neli_enum(serialized_type = "u16")]
pub enum IpvsStatsAttr {
    /// IPVS_STATS_ATTR_UNSPEC
    Unspec = 0,
    /// IPVS_STATS_ATTR_CONNS: connections scheduled
    Conns = 1,
    /// IPVS_STATS_ATTR_INPKTS: packets in
    Inpkts = 2,
    /// IPVS_STATS_ATTR_OUTPKTS: packets out
    Outpkts = 3,
    /// IPVS_STATS_ATTR_INBYTES: bytes in
    Inbytes = 4,
    /// IPVS_STATS_ATTR_OUTBYTES: bytes out
    Outbytes = 5,
    /// IPVS_STATS_ATTR_CPS: connections per second
    Cps = 6,
    /// IPVS_STATS_ATTR_INPPS
    Inpps = 7,
    /// IPVS_STATS_ATTR_OUTPPS
    Outpps = 8,
    /// IPVS_STATS_ATTR_INBPS
    Inbps = 9,
    /// IPVS_STATS_ATTR_OUTBPS
    Outbps = 10,
    /// IPVS_STATS_ATTR_PAD
    Pad = 11,
}
impl NlAttrType for IpvsStatsAttr {}

/// A service's or destination's traffic counters (totals, and the kernel's rate estimates).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets in.
    pub inpkts: u64,
    /// Packets out (NAT only: DR and TUN replies bypass the director).
    pub outpkts: u64,
    /// Bytes in.
    pub inbytes: u64,
    /// Bytes out.
    pub outbytes: u64,
    /// Connections per second (estimate).
    pub cps: u64,
    /// Bytes per second in (estimate).
    pub inbps: u64,
    /// Bytes per second out (estimate).
    pub outbps: u64,
}

/// Reads a stats nest: `IPVS_*_ATTR_STATS64` (all u64) when the kernel sends it, else
/// `IPVS_*_ATTR_STATS`.
pub fn parse_stats(
    stats64: Option<GenlAttrHandle<'_, IpvsStatsAttr>>,
    stats32: Option<GenlAttrHandle<'_, IpvsStatsAttr>>,
) -> Stats {
    let read = |h: &GenlAttrHandle<'_, IpvsStatsAttr>, a: IpvsStatsAttr, wide: bool| -> u64 {
        if wide {
            h.get_attr_payload_as::<u64>(a).unwrap_or(0)
        } else {
            h.get_attr_payload_as::<u32>(a).map_or(0, u64::from)
        }
    };
    let (h, wide) = match (&stats64, &stats32) {
        (Some(h), _) => (h, true),
        (None, Some(h)) => (h, false),
        (None, None) => return Stats::default(),
    };
    Stats {
        conns: read(h, IpvsStatsAttr::Conns, wide),
        inpkts: read(h, IpvsStatsAttr::Inpkts, wide),
        outpkts: read(h, IpvsStatsAttr::Outpkts, wide),
        // Bytes are u64 in both.
        inbytes: read(h, IpvsStatsAttr::Inbytes, true),
        outbytes: read(h, IpvsStatsAttr::Outbytes, true),
        cps: read(h, IpvsStatsAttr::Cps, wide),
        inbps: read(h, IpvsStatsAttr::Inbps, wide),
        outbps: read(h, IpvsStatsAttr::Outbps, wide),
    }
}

/// A service as listed, with its counters and destinations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceListing {
    /// The service.
    pub service: Service,
    /// Its counters.
    pub stats: Stats,
    /// Its destinations.
    pub dests: Vec<DestListing>,
}

/// A destination as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestListing {
    /// The destination.
    pub dest: Dest,
    /// Active connections.
    pub active_conns: u32,
    /// Inactive connections.
    pub inactive_conns: u32,
    /// Persistence templates.
    pub persist_conns: u32,
    /// Its counters.
    pub stats: Stats,
}

/// `enum { IPVS_DAEMON_ATTR_* }`.
#[neli_enum(serialized_type = "u16")]
pub enum IpvsDaemonAttr {
    /// IPVS_DAEMON_ATTR_UNSPEC
    Unspec = 0,
    /// IPVS_DAEMON_ATTR_STATE (u32: IP_VS_STATE_MASTER 1, IP_VS_STATE_BACKUP 2)
    State = 1,
    /// IPVS_DAEMON_ATTR_MCAST_IFN (string)
    McastIfn = 2,
    /// IPVS_DAEMON_ATTR_SYNC_ID (u32)
    SyncId = 3,
    /// IPVS_DAEMON_ATTR_SYNC_MAXLEN (u16)
    SyncMaxlen = 4,
    /// IPVS_DAEMON_ATTR_MCAST_GROUP (IPv4, be32)
    McastGroup = 5,
    /// IPVS_DAEMON_ATTR_MCAST_GROUP6 (16 bytes)
    McastGroup6 = 6,
    /// IPVS_DAEMON_ATTR_MCAST_PORT (u16)
    McastPort = 7,
    /// IPVS_DAEMON_ATTR_MCAST_TTL (u8)
    McastTtl = 8,
}
impl NlAttrType for IpvsDaemonAttr {}

/// `IP_VS_STATE_MASTER`.
pub const IP_VS_STATE_MASTER: u32 = 1;
/// `IP_VS_STATE_BACKUP`.
pub const IP_VS_STATE_BACKUP: u32 = 2;

/// One connection-sync daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncDaemonConfig {
    /// `IP_VS_STATE_MASTER` or `IP_VS_STATE_BACKUP`.
    pub state: u32,
    /// Interface.
    pub interface: String,
    /// Sync id.
    pub sync_id: u32,
    /// Largest message, if set.
    pub maxlen: Option<u16>,
    /// Multicast group, if set.
    pub group: Option<IpAddr>,
    /// Multicast port, if set.
    pub port: Option<u16>,
    /// Multicast TTL, if set.
    pub ttl: Option<u8>,
}

/// `IPVS_CMD_ATTR_DAEMON` for `IPVS_CMD_NEW_DAEMON` (everything) or `_DEL_DAEMON` (the
/// state only, when `full` is false).
pub fn daemon_attr(
    d: &SyncDaemonConfig,
    full: bool,
) -> Result<Nlattr<IpvsCmdAttr, Buffer>, SerError> {
    let mut nest = empty_nest(IpvsCmdAttr::Daemon)?.nest(&attr(IpvsDaemonAttr::State, d.state)?)?;
    if !full {
        return Ok(nest);
    }
    nest = nest
        .nest(&attr(IpvsDaemonAttr::McastIfn, d.interface.as_str())?)?
        .nest(&attr(IpvsDaemonAttr::SyncId, d.sync_id)?)?;
    if let Some(maxlen) = d.maxlen {
        nest = nest.nest(&attr(IpvsDaemonAttr::SyncMaxlen, maxlen)?)?;
    }
    match d.group {
        Some(IpAddr::V4(v4)) => {
            nest = nest.nest(&attr(
                IpvsDaemonAttr::McastGroup,
                Buffer::from(v4.octets().to_vec()),
            )?)?;
        }
        Some(IpAddr::V6(v6)) => {
            nest = nest.nest(&attr(
                IpvsDaemonAttr::McastGroup6,
                Buffer::from(v6.octets().to_vec()),
            )?)?;
        }
        None => {}
    }
    if let Some(port) = d.port {
        nest = nest.nest(&attr(IpvsDaemonAttr::McastPort, port)?)?;
    }
    if let Some(ttl) = d.ttl {
        nest = nest.nest(&attr(IpvsDaemonAttr::McastTtl, ttl)?)?;
    }
    Ok(nest)
}

/// `enum { IPVS_INFO_ATTR_* }`.
#[neli_enum(serialized_type = "u16")]
pub enum IpvsInfoAttr {
    /// IPVS_INFO_ATTR_UNSPEC
    Unspec = 0,
    /// IPVS_INFO_ATTR_VERSION (u32: major << 16 | minor << 8 | patch)
    Version = 1,
    /// IPVS_INFO_ATTR_CONN_TAB_SIZE (u32)
    ConnTabSize = 2,
}
impl NlAttrType for IpvsInfoAttr {}

/// `IP_VS_SVC_F_HASHED`: set by the kernel on every service in its table; not a user setting.
pub const IP_VS_SVC_F_HASHED: u32 = 0x0002;

/// `IP_VS_CONN_F_MASQ`.
pub const IP_VS_CONN_F_MASQ: u32 = 0;
/// `IP_VS_CONN_F_TUNNEL`.
pub const IP_VS_CONN_F_TUNNEL: u32 = 2;
/// `IP_VS_CONN_F_DROUTE`.
pub const IP_VS_CONN_F_DROUTE: u32 = 3;
/// `IP_VS_CONN_F_FWD_MASK`.
pub const IP_VS_CONN_F_FWD_MASK: u32 = 7;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// `IPVS_CMD_GET_INFO`'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpvsInfo {
    /// (major, minor, patch).
    pub version: (u8, u8, u8),
    /// Size of the connection hash table.
    pub conn_tab_size: u32,
}

/// A virtual service, identified by (address, protocol, port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Virtual address.
    pub addr: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub protocol: u16,
    /// Port.
    pub port: u16,
    /// Scheduler name.
    pub scheduler: String,
    /// `IP_VS_SVC_F_*` flags.
    pub flags: u32,
    /// Persistence timeout in seconds (0: none).
    pub timeout: u32,
    /// Persistence netmask: IPv4, the mask as the kernel's `__be32` (network byte order in
    /// memory); IPv6, the prefix length.
    pub netmask: u32,
    /// Firewall mark of a fwmark service (0: the service is (address, protocol, port)).
    pub fwmark: u32,
    /// Persistence engine (`sip`).
    pub pe_name: Option<String>,
}

impl Service {
    /// A service with the kernel's defaults: no flags, no persistence, host netmask.
    pub fn new(addr: IpAddr, protocol: u16, port: u16, scheduler: &str) -> Self {
        let netmask = if addr.is_ipv4() { u32::MAX } else { 128 };
        Self {
            addr,
            protocol,
            port,
            scheduler: scheduler.to_owned(),
            flags: 0,
            timeout: 0,
            netmask,
            fwmark: 0,
            pe_name: None,
        }
    }

    /// A firewall-mark service of `addr`'s family.
    pub fn fwmark(family_of: IpAddr, mark: u32, scheduler: &str) -> Self {
        let unspecified = if family_of.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        Self {
            fwmark: mark,
            ..Self::new(unspecified, 0, 0, scheduler)
        }
    }
}

/// A destination (real server) of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dest {
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// `IP_VS_CONN_F_MASQ`, `_TUNNEL` or `_DROUTE`.
    pub fwd_method: u32,
    /// Weight.
    pub weight: u32,
    /// Upper connection threshold (0: none).
    pub u_thresh: u32,
    /// Lower connection threshold.
    pub l_thresh: u32,
    /// Tunnel: `IP_VS_CONN_F_TUNNEL_TYPE_*` (0 ipip, 1 gue, 2 gre).
    pub tun_type: u8,
    /// Tunnel: GUE port.
    pub tun_port: u16,
    /// Tunnel: `IP_VS_TUNNEL_ENCAP_FLAG_*` (1 csum, 2 remcsum).
    pub tun_flags: u16,
}

fn attr<T: NlAttrType>(
    kind: T,
    payload: impl neli::ToBytes + neli::Size,
) -> Result<Nlattr<T, Buffer>, SerError> {
    let ty = AttrTypeBuilder::default()
        .nla_type(kind)
        .build()
        .map_err(|e| SerError::new(e.to_string()))?;
    NlattrBuilder::default()
        .nla_type(ty)
        .nla_payload(payload)
        .build()
        .map_err(|e| SerError::new(e.to_string()))
}

fn family(ip: IpAddr) -> u16 {
    if ip.is_ipv4() { AF_INET } else { AF_INET6 }
}

/// `union nf_inet_addr`: an IPv4 address in the first 4 bytes, zero padded to 16.
fn inet_addr(ip: IpAddr) -> Vec<u8> {
    let mut bytes = vec![0u8; 16];
    match ip {
        IpAddr::V4(v4) => bytes[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => bytes.copy_from_slice(&v6.octets()),
    }
    bytes
}

fn parse_inet_addr(af: u16, bytes: &[u8]) -> Result<IpAddr, DeError> {
    match (af, bytes.len()) {
        (AF_INET, 4..) => Ok(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        (AF_INET6, 16..) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&bytes[..16]);
            Ok(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => Err(DeError::new(format!(
            "address of family {af} with {} bytes",
            bytes.len()
        ))),
    }
}

fn empty_nest<T: NlAttrType>(kind: T) -> Result<Nlattr<T, Buffer>, SerError> {
    attr(kind, Buffer::from(Vec::<u8>::new()))
}

/// `IPVS_CMD_ATTR_TIMEOUT_*` (for `IPVS_CMD_SET_CONFIG`): seconds, 0 for unchanged.
pub fn timeout_attr(
    kind: IpvsCmdAttr,
    seconds: u32,
) -> Result<Nlattr<IpvsCmdAttr, Buffer>, SerError> {
    attr(kind, seconds)
}

/// `IPVS_CMD_ATTR_SERVICE` with only the identifying attributes (for dest commands and deletes).
pub fn service_key_attr(svc: &Service) -> Result<Nlattr<IpvsCmdAttr, Buffer>, SerError> {
    if svc.fwmark != 0 {
        return empty_nest(IpvsCmdAttr::Service)?
            .nest(&attr(IpvsSvcAttr::Af, family(svc.addr))?)?
            .nest(&attr(IpvsSvcAttr::Fwmark, svc.fwmark)?);
    }
    empty_nest(IpvsCmdAttr::Service)?
        .nest(&attr(IpvsSvcAttr::Af, family(svc.addr))?)?
        .nest(&attr(IpvsSvcAttr::Protocol, svc.protocol)?)?
        .nest(&attr(IpvsSvcAttr::Addr, Buffer::from(inet_addr(svc.addr)))?)?
        .nest(&attr(
            IpvsSvcAttr::Port,
            Buffer::from(svc.port.to_be_bytes().to_vec()),
        )?)
}

/// `IPVS_CMD_ATTR_SERVICE` with every attribute (for `IPVS_CMD_NEW_SERVICE` / `SET_SERVICE`).
pub fn service_attr(svc: &Service) -> Result<Nlattr<IpvsCmdAttr, Buffer>, SerError> {
    let mut flags = Vec::with_capacity(8);
    flags.extend_from_slice(&svc.flags.to_ne_bytes());
    flags.extend_from_slice(&u32::MAX.to_ne_bytes());
    let nest = service_key_attr(svc)?
        .nest(&attr(IpvsSvcAttr::SchedName, svc.scheduler.as_str())?)?
        .nest(&attr(IpvsSvcAttr::Flags, Buffer::from(flags))?)?
        .nest(&attr(IpvsSvcAttr::Timeout, svc.timeout)?)?
        .nest(&attr(IpvsSvcAttr::Netmask, svc.netmask)?)?;
    match &svc.pe_name {
        Some(pe) => nest.nest(&attr(IpvsSvcAttr::PeName, pe.as_str())?),
        None => Ok(nest),
    }
}

/// `IPVS_CMD_ATTR_DEST` with every attribute (for `IPVS_CMD_NEW_DEST` / `SET_DEST`).
pub fn dest_attr(dest: &Dest) -> Result<Nlattr<IpvsCmdAttr, Buffer>, SerError> {
    let nest = empty_nest(IpvsCmdAttr::Dest)?
        .nest(&attr(
            IpvsDestAttr::Addr,
            Buffer::from(inet_addr(dest.addr)),
        )?)?
        .nest(&attr(
            IpvsDestAttr::Port,
            Buffer::from(dest.port.to_be_bytes().to_vec()),
        )?)?
        .nest(&attr(IpvsDestAttr::FwdMethod, dest.fwd_method)?)?
        .nest(&attr(IpvsDestAttr::Weight, dest.weight)?)?
        .nest(&attr(IpvsDestAttr::UThresh, dest.u_thresh)?)?
        .nest(&attr(IpvsDestAttr::LThresh, dest.l_thresh)?)?
        .nest(&attr(IpvsDestAttr::AddrFamily, family(dest.addr))?)?;
    if dest.fwd_method != IP_VS_CONN_F_TUNNEL || (dest.tun_type, dest.tun_flags) == (0, 0) {
        return Ok(nest);
    }
    nest.nest(&attr(IpvsDestAttr::TunType, dest.tun_type)?)?
        .nest(&attr(
            IpvsDestAttr::TunPort,
            Buffer::from(dest.tun_port.to_be_bytes().to_vec()),
        )?)?
        .nest(&attr(IpvsDestAttr::TunFlags, dest.tun_flags)?)
}

fn be16(bytes: Option<&[u8]>) -> Result<u16, DeError> {
    match bytes {
        Some([a, b, ..]) => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(DeError::new("port attribute shorter than 2 bytes")),
    }
}

/// Reads the nested `IPVS_SVC_ATTR_*` of a service.
pub fn parse_service(svc: &GenlAttrHandle<'_, IpvsSvcAttr>) -> Result<Service, DeError> {
    let af: u16 = svc.get_attr_payload_as(IpvsSvcAttr::Af)?;
    let fwmark: u32 = svc.get_attr_payload_as(IpvsSvcAttr::Fwmark).unwrap_or(0);
    let (addr, port) = if fwmark != 0 {
        let zero = [0u8; 16];
        (parse_inet_addr(af, &zero)?, 0)
    } else {
        let addr = svc
            .get_attribute(IpvsSvcAttr::Addr)
            .ok_or_else(|| DeError::new("service with neither address nor fwmark"))?;
        let port = be16(
            svc.get_attribute(IpvsSvcAttr::Port)
                .map(|a| a.nla_payload().as_ref()),
        )?;
        (parse_inet_addr(af, addr.nla_payload().as_ref())?, port)
    };
    let flags = match svc
        .get_attribute(IpvsSvcAttr::Flags)
        .map(|a| a.nla_payload().as_ref())
    {
        Some([a, b, c, d, ..]) => u32::from_ne_bytes([*a, *b, *c, *d]) & !IP_VS_SVC_F_HASHED,
        _ => 0,
    };
    Ok(Service {
        addr,
        protocol: svc.get_attr_payload_as(IpvsSvcAttr::Protocol).unwrap_or(0),
        port,
        scheduler: svc.get_attr_payload_as_with_len::<String>(IpvsSvcAttr::SchedName)?,
        flags,
        timeout: svc.get_attr_payload_as(IpvsSvcAttr::Timeout).unwrap_or(0),
        netmask: svc.get_attr_payload_as(IpvsSvcAttr::Netmask).unwrap_or(0),
        fwmark,
        pe_name: svc
            .get_attr_payload_as_with_len::<String>(IpvsSvcAttr::PeName)
            .ok()
            .filter(|p| !p.is_empty()),
    })
}

/// Reads the nested `IPVS_DEST_ATTR_*` of a destination; `service_af` when the kernel omits
/// `IPVS_DEST_ATTR_ADDR_FAMILY`.
pub fn parse_dest(
    dest: &GenlAttrHandle<'_, IpvsDestAttr>,
    service_af: IpAddr,
) -> Result<Dest, DeError> {
    let af: u16 = dest
        .get_attr_payload_as(IpvsDestAttr::AddrFamily)
        .unwrap_or(family(service_af));
    let addr = dest
        .get_attribute(IpvsDestAttr::Addr)
        .ok_or_else(|| DeError::new("dest without address"))?;
    let addr = parse_inet_addr(af, addr.nla_payload().as_ref())?;
    let port = be16(
        dest.get_attribute(IpvsDestAttr::Port)
            .map(|a| a.nla_payload().as_ref()),
    )?;
    let fwd: u32 = dest.get_attr_payload_as(IpvsDestAttr::FwdMethod)?;
    Ok(Dest {
        addr,
        port,
        fwd_method: fwd & IP_VS_CONN_F_FWD_MASK,
        weight: dest.get_attr_payload_as(IpvsDestAttr::Weight)?,
        u_thresh: dest.get_attr_payload_as(IpvsDestAttr::UThresh).unwrap_or(0),
        l_thresh: dest.get_attr_payload_as(IpvsDestAttr::LThresh).unwrap_or(0),
        tun_type: dest.get_attr_payload_as(IpvsDestAttr::TunType).unwrap_or(0),
        tun_port: dest
            .get_attribute(IpvsDestAttr::TunPort)
            .map_or(Ok(0), |a| be16(Some(a.nla_payload().as_ref())))?,
        tun_flags: dest
            .get_attr_payload_as(IpvsDestAttr::TunFlags)
            .unwrap_or(0),
    })
}

/// Reads `IPVS_CMD_GET_INFO`'s answer.
pub fn parse_info(info: &GenlAttrHandle<'_, IpvsCmdAttr>) -> Result<IpvsInfo, DeError> {
    // GET_INFO's reply carries IPVS_INFO_ATTR_* at the top level, which share numbers with
    // IPVS_CMD_ATTR_SERVICE (1) and IPVS_CMD_ATTR_DEST (2).
    let version: u32 = info.get_attr_payload_as(IpvsCmdAttr::Service)?;
    let conn_tab_size: u32 = info.get_attr_payload_as(IpvsCmdAttr::Dest)?;
    let [_, major, minor, patch] = version.to_be_bytes();
    Ok(IpvsInfo {
        version: (major, minor, patch),
        conn_tab_size,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use neli::{Size as _, ToBytes as _};

    use super::*;

    fn bytes(attr: &Nlattr<IpvsCmdAttr, Buffer>) -> Vec<u8> {
        let mut out = Cursor::new(vec![0xa5; attr.padded_size()]);
        attr.to_bytes(&mut out).expect("serializes");
        out.into_inner()
    }

    #[test]
    fn service_key_matches_the_ip_vs_h_layout() {
        let svc = Service::new("203.0.113.10".parse().expect("ip"), 6, 80, "wrr");
        #[rustfmt::skip]
        let expected = [
            // IPVS_CMD_ATTR_SERVICE (1) | NLA_F_NESTED, length 4 + 8 + 8 + 20 + 8 = 48
            48, 0, 0x01, 0x80,
            // IPVS_SVC_ATTR_AF (1): u16 AF_INET, padded to 4
            6, 0, 1, 0, 2, 0, 0, 0,
            // IPVS_SVC_ATTR_PROTOCOL (2): u16 IPPROTO_TCP
            6, 0, 2, 0, 6, 0, 0, 0,
            // IPVS_SVC_ATTR_ADDR (3): union nf_inet_addr, IPv4 in the first 4 of 16 bytes
            20, 0, 3, 0, 203, 0, 113, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            // IPVS_SVC_ATTR_PORT (4): be16 80
            6, 0, 4, 0, 0, 80, 0, 0,
        ];
        assert_eq!(bytes(&service_key_attr(&svc).expect("encodes")), expected);
    }

    #[test]
    fn dest_matches_the_ip_vs_h_layout() {
        let dest = Dest {
            addr: "2001:db8::2".parse().expect("ip"),
            port: 8080,
            fwd_method: IP_VS_CONN_F_DROUTE,
            weight: 3,
            u_thresh: 100,
            l_thresh: 10,
            tun_type: 0,
            tun_port: 0,
            tun_flags: 0,
        };
        #[rustfmt::skip]
        let expected = [
            // IPVS_CMD_ATTR_DEST (2) | NLA_F_NESTED, length 4 + 20 + 8 + 8*4 + 8 = 72
            72, 0, 0x02, 0x80,
            // IPVS_DEST_ATTR_ADDR (1): 16 bytes of IPv6
            20, 0, 1, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
            // IPVS_DEST_ATTR_PORT (2): be16 8080
            6, 0, 2, 0, 0x1f, 0x90, 0, 0,
            // IPVS_DEST_ATTR_FWD_METHOD (3): IP_VS_CONN_F_DROUTE
            8, 0, 3, 0, 3, 0, 0, 0,
            // IPVS_DEST_ATTR_WEIGHT (4)
            8, 0, 4, 0, 3, 0, 0, 0,
            // IPVS_DEST_ATTR_U_THRESH (5)
            8, 0, 5, 0, 100, 0, 0, 0,
            // IPVS_DEST_ATTR_L_THRESH (6)
            8, 0, 6, 0, 10, 0, 0, 0,
            // IPVS_DEST_ATTR_ADDR_FAMILY (11): AF_INET6
            6, 0, 11, 0, 10, 0, 0, 0,
        ];
        assert_eq!(bytes(&dest_attr(&dest).expect("encodes")), expected);
    }

    #[test]
    fn a_full_service_adds_scheduler_flags_timeout_and_netmask() {
        let svc = Service::new("2001:db8::10".parse().expect("ip"), 17, 53, "sh");
        let b = bytes(&service_attr(&svc).expect("encodes"));
        let key = bytes(&service_key_attr(&svc).expect("encodes"));
        #[rustfmt::skip]
        let tail = [
            // IPVS_SVC_ATTR_SCHED_NAME (6): "sh\0", padded
            7, 0, 6, 0, b's', b'h', 0, 0,
            // IPVS_SVC_ATTR_FLAGS (7): struct ip_vs_flags { flags 0, mask ~0 }
            12, 0, 7, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
            // IPVS_SVC_ATTR_TIMEOUT (8): 0
            8, 0, 8, 0, 0, 0, 0, 0,
            // IPVS_SVC_ATTR_NETMASK (9): 128 for IPv6
            8, 0, 9, 0, 128, 0, 0, 0,
        ];
        assert_eq!(&b[key.len()..], tail);
        assert_eq!(
            u16::from_ne_bytes([b[0], b[1]]) as usize,
            key.len() + tail.len()
        );
    }

    /// Bytes of one attribute nest as `strace -xx` showed them.
    fn hex(text: &str) -> Vec<u8> {
        text.split("\\x")
            .filter(|b| !b.is_empty())
            .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
            .collect()
    }

    fn nest(bytes: &[u8]) -> Nlattr<IpvsCmdAttr, Buffer> {
        use neli::FromBytes as _;
        Nlattr::from_bytes(&mut Cursor::new(bytes)).expect("an attribute")
    }

    // The vectors below are ipvsadm's own requests, recorded in the IPVS VM (Debian's
    // ipvsadm 1.31 on Debian's 6.1 kernel) with `strace -e trace=sendmsg -xx`; each is the
    // generic-netlink payload after its 4-byte genl header.

    /// `ipvsadm -A -t 203.0.113.10:80 -s wrr` (IPVS_CMD_NEW_SERVICE).
    const IPVSADM_NEW_SERVICE: &str = r"\x54\x00\x01\x80\x06\x00\x01\x00\x02\x00\x00\x00\x06\x00\x02\x00\x06\x00\x00\x00\x14\x00\x03\x00\xcb\x00\x71\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x06\x00\x04\x00\x00\x50\x00\x00\x08\x00\x06\x00\x77\x72\x72\x00\x0c\x00\x07\x00\x00\x00\x00\x00\xff\xff\xff\xff\x08\x00\x08\x00\x00\x00\x00\x00\x08\x00\x09\x00\xff\xff\xff\xff";

    /// `ipvsadm -A -f 7 -s rr -6` (IPVS_CMD_NEW_SERVICE, a firewall-mark service).
    const IPVSADM_NEW_FWMARK_SERVICE: &str = r"\x38\x00\x01\x80\x06\x00\x01\x00\x0a\x00\x00\x00\x08\x00\x05\x00\x07\x00\x00\x00\x07\x00\x06\x00\x72\x72\x00\x00\x0c\x00\x07\x00\x00\x00\x00\x00\xff\xff\xff\xff\x08\x00\x08\x00\x00\x00\x00\x00\x08\x00\x09\x00\x80\x00\x00\x00";

    /// The destination nest of `ipvsadm -a -t 203.0.113.10:80 -r 192.0.2.2:8080 -m -w 3`
    /// (IPVS_CMD_NEW_DEST; ipvsadm orders the attributes differently and adds the tunnel ones).
    const IPVSADM_NEW_DEST: &str = r"\x60\x00\x02\x80\x06\x00\x0b\x00\x02\x00\x00\x00\x14\x00\x01\x00\xc0\x00\x02\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x06\x00\x02\x00\x1f\x90\x00\x00\x08\x00\x03\x00\x00\x00\x00\x00\x08\x00\x04\x00\x03\x00\x00\x00\x05\x00\x0d\x00\x00\x00\x00\x00\x06\x00\x0e\x00\x00\x00\x00\x00\x06\x00\x0f\x00\x00\x00\x00\x00\x08\x00\x05\x00\x00\x00\x00\x00\x08\x00\x06\x00\x00\x00\x00\x00";

    /// `ipvsadm --set 900 120 300` (IPVS_CMD_SET_CONFIG): its three attributes.
    const IPVSADM_SET_TIMEOUTS: &str = r"\x08\x00\x04\x00\x84\x03\x00\x00\x08\x00\x05\x00\x78\x00\x00\x00\x08\x00\x06\x00\x2c\x01\x00\x00";

    #[test]
    fn services_encode_byte_for_byte_as_ipvsadm_sends_them() {
        let svc = Service::new("203.0.113.10".parse().expect("ip"), 6, 80, "wrr");
        assert_eq!(
            bytes(&service_attr(&svc).expect("encodes")),
            hex(IPVSADM_NEW_SERVICE)
        );
        let mark = Service::fwmark("::".parse().expect("ip"), 7, "rr");
        assert_eq!(
            bytes(&service_attr(&mark).expect("encodes")),
            hex(IPVSADM_NEW_FWMARK_SERVICE)
        );
        let mut timeouts = Vec::new();
        for (kind, seconds) in [
            (IpvsCmdAttr::TimeoutTcp, 900),
            (IpvsCmdAttr::TimeoutTcpFin, 120),
            (IpvsCmdAttr::TimeoutUdp, 300),
        ] {
            timeouts.extend(bytes(&timeout_attr(kind, seconds).expect("encodes")));
        }
        assert_eq!(timeouts, hex(IPVSADM_SET_TIMEOUTS));
    }

    #[test]
    fn ipvsadm_s_requests_parse_to_the_same_model() {
        let svc = nest(&hex(IPVSADM_NEW_SERVICE));
        let parsed = parse_service(&svc.get_attr_handle().expect("nested")).expect("parses");
        assert_eq!(
            parsed,
            Service::new("203.0.113.10".parse().expect("ip"), 6, 80, "wrr")
        );
        let mark = nest(&hex(IPVSADM_NEW_FWMARK_SERVICE));
        let parsed = parse_service(&mark.get_attr_handle().expect("nested")).expect("parses");
        assert_eq!(parsed, Service::fwmark("::".parse().expect("ip"), 7, "rr"));
        let dest = nest(&hex(IPVSADM_NEW_DEST));
        let parsed = parse_dest(
            &dest.get_attr_handle().expect("nested"),
            "203.0.113.10".parse().expect("ip"),
        )
        .expect("parses");
        assert_eq!(
            parsed,
            Dest {
                addr: "192.0.2.2".parse().expect("ip"),
                port: 8080,
                fwd_method: IP_VS_CONN_F_MASQ,
                weight: 3,
                u_thresh: 0,
                l_thresh: 0,
                tun_type: 0,
                tun_port: 0,
                tun_flags: 0,
            }
        );
    }
}
