//! lbd's TOML format: serde DTOs (unknown fields rejected) into the [`Spec`] tree.
//!
//! ```toml
//! [dataplane]
//! mode = "xdp"              # none | ipvs (default) | xdp | xdp+ipvs
//! xdp_interface = "eth0"
//! xdp_attach = "auto"       # auto (default) | native | generic
//!
//! [[virtual_server]]
//! address = "203.0.113.10"
//! port = 80
//! protocol = "tcp"          # tcp (default) | udp | sctp
//! scheduler = "wrr"         # any IPVS scheduler; wlc by default, as keepalived
//! forwarding = "nat"        # nat (default) | dr | tun
//! real_server = [ { address = "192.0.2.2", port = 80, weight = 1 } ]
//! ```

use serde::Deserialize;
use toml::Spanned;

use super::{
    ConfigError, Pos,
    spec::{At, DataplaneSpec, RealServerSpec, Spec, VirtualServerSpec, VrrpInstanceSpec},
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDto {
    dataplane: Option<Spanned<DataplaneDto>>,
    #[serde(default)]
    virtual_server: Vec<Spanned<VirtualServerDto>>,
    #[serde(default)]
    vrrp_instance: Vec<Spanned<VrrpInstanceDto>>,
    router_id: Option<Spanned<String>>,
}

/// keepalived's vrrp_instance keywords, with the same names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VrrpInstanceDto {
    name: Spanned<String>,
    interface: Option<Spanned<String>>,
    state: Option<Spanned<String>>,
    virtual_router_id: Option<Spanned<i64>>,
    priority: Option<Spanned<i64>>,
    advert_int: Option<Spanned<f64>>,
    version: Option<Spanned<i64>>,
    preempt: Option<Spanned<bool>>,
    preempt_delay: Option<Spanned<f64>>,
    #[serde(default)]
    virtual_ipaddress: Vec<Spanned<String>>,
    auth_type: Option<Spanned<String>>,
    auth_pass: Option<Spanned<String>>,
    unicast_src_ip: Option<Spanned<String>>,
    #[serde(default)]
    unicast_peer: Vec<Spanned<String>>,
    v3_checksum_as_v2: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataplaneDto {
    mode: Option<Spanned<String>>,
    xdp_interface: Option<Spanned<String>>,
    xdp_attach: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VirtualServerDto {
    address: Spanned<String>,
    port: Spanned<i64>,
    protocol: Option<Spanned<String>>,
    scheduler: Option<Spanned<String>>,
    forwarding: Option<Spanned<String>>,
    #[serde(default)]
    real_server: Vec<Spanned<RealServerDto>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RealServerDto {
    address: Spanned<String>,
    port: Spanned<i64>,
    weight: Option<Spanned<i64>>,
}

/// Parses lbd's TOML format.
pub fn parse(file: &str, text: &str) -> Result<Spec, Vec<ConfigError>> {
    let dto: FileDto = ::toml::from_str(text).map_err(|e| {
        let pos = e
            .span()
            .map_or(Pos { line: 1, col: 1 }, |s| Pos::of_offset(text, s.start));
        vec![ConfigError {
            file: file.to_owned(),
            pos,
            message: e.message().trim_end().to_owned(),
        }]
    })?;
    let at =
        |s: &Spanned<String>| At::new(s.get_ref().clone(), Pos::of_offset(text, s.span().start));
    let at_int = |s: &Spanned<i64>| At::new(*s.get_ref(), Pos::of_offset(text, s.span().start));
    let dataplane = dto.dataplane.map(|d| {
        let pos = Pos::of_offset(text, d.span().start);
        let d = d.into_inner();
        DataplaneSpec {
            pos,
            mode: d.mode.as_ref().map(at),
            xdp_interface: d.xdp_interface.as_ref().map(at),
            xdp_attach: d.xdp_attach.as_ref().map(at),
        }
    });
    let virtual_servers = dto
        .virtual_server
        .into_iter()
        .map(|vs| {
            let pos = Pos::of_offset(text, vs.span().start);
            let vs = vs.into_inner();
            VirtualServerSpec {
                pos,
                address: at(&vs.address),
                port: at_int(&vs.port),
                protocol: vs.protocol.as_ref().map(at),
                scheduler: vs.scheduler.as_ref().map(at),
                forwarding: vs.forwarding.as_ref().map(at),
                real_servers: vs
                    .real_server
                    .into_iter()
                    .map(|rs| {
                        let pos = Pos::of_offset(text, rs.span().start);
                        let rs = rs.into_inner();
                        RealServerSpec {
                            pos,
                            address: at(&rs.address),
                            port: at_int(&rs.port),
                            weight: rs.weight.as_ref().map(at_int),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    let vrrp_instances = dto
        .vrrp_instance
        .into_iter()
        .map(|vi| {
            let pos = Pos::of_offset(text, vi.span().start);
            let vi = vi.into_inner();
            let float =
                |s: &Spanned<f64>| At::new(*s.get_ref(), Pos::of_offset(text, s.span().start));
            let flag =
                |s: &Spanned<bool>| At::new(*s.get_ref(), Pos::of_offset(text, s.span().start));
            VrrpInstanceSpec {
                pos,
                name: at(&vi.name),
                interface: vi.interface.as_ref().map(at),
                state: vi.state.as_ref().map(at),
                virtual_router_id: vi.virtual_router_id.as_ref().map(at_int),
                priority: vi.priority.as_ref().map(at_int),
                advert_int: vi.advert_int.as_ref().map(float),
                version: vi.version.as_ref().map(at_int),
                preempt: vi.preempt.as_ref().map(flag),
                preempt_delay: vi.preempt_delay.as_ref().map(float),
                virtual_ipaddress: vi.virtual_ipaddress.iter().map(at).collect(),
                auth_type: vi.auth_type.as_ref().map(at),
                auth_pass: vi.auth_pass.as_ref().map(at),
                unicast_src_ip: vi.unicast_src_ip.as_ref().map(at),
                unicast_peer: vi.unicast_peer.iter().map(at).collect(),
                v3_checksum_as_v2: vi.v3_checksum_as_v2.as_ref().map(flag),
            }
        })
        .collect();
    Ok(Spec {
        dataplane,
        virtual_servers,
        vrrp_instances,
        vrrp_version: None,
        router_id: dto.router_id.as_ref().map(at),
    })
}
