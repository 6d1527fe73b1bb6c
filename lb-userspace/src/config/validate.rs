//! [`validate`]: the unvalidated tree to a [`Model`], with every error.

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
};

use super::{
    ConfigError, Pos,
    spec::{At, DataplaneSpec, RealServerSpec, Spec, VirtualServerSpec},
};
use crate::model::{
    Dataplane, Forwarding, Model, Protocol, RealServer, Scheduler, VirtualServer, Weight,
    XdpAttach, XdpSettings, same_family,
};

/// Collects errors against one file.
struct Errors<'a> {
    file: &'a str,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn push(&mut self, pos: Pos, message: impl Into<String>) {
        self.list.push(ConfigError {
            file: self.file.to_owned(),
            pos,
            message: message.into(),
        });
    }
}

/// Validates `spec`, read from `file`, into a [`Model`]; returns every error found.
pub fn validate(file: &str, spec: &Spec) -> Result<Model, Vec<ConfigError>> {
    let mut errors = Errors {
        file,
        list: Vec::new(),
    };
    let dataplane = dataplane(spec.dataplane.as_ref(), &mut errors);
    let mut seen = HashSet::new();
    let mut virtual_servers = Vec::new();
    for written in &spec.virtual_servers {
        if let Some(vs) = virtual_server(written, &mut errors) {
            if seen.insert((vs.vip, vs.protocol)) {
                virtual_servers.push(vs);
            } else {
                let msg = format!("duplicate virtual server {} {}", vs.vip, vs.protocol.name());
                errors.push(written.pos, msg);
            }
        }
    }
    match (dataplane, errors.list.is_empty()) {
        (Some(dataplane), true) => Ok(Model {
            dataplane,
            virtual_servers,
        }),
        _ => Err(errors.list),
    }
}

fn dataplane(spec: Option<&DataplaneSpec>, errors: &mut Errors<'_>) -> Option<Dataplane> {
    let Some(spec) = spec else {
        // No [dataplane] table: keepalived's model, IPVS only.
        return Some(Dataplane::Ipvs);
    };
    let mode = spec.mode.as_ref().map_or("ipvs", |m| m.value.as_str());
    let attach = match spec.xdp_attach.as_ref() {
        None => XdpAttach::Auto,
        Some(At { value, pos }) => match value.as_str() {
            "auto" => XdpAttach::Auto,
            "native" => XdpAttach::Native,
            "generic" => XdpAttach::Generic,
            other => {
                errors.push(
                    *pos,
                    format!("xdp_attach must be auto, native or generic, not {other:?}"),
                );
                XdpAttach::Auto
            }
        },
    };
    let xdp = |errors: &mut Errors<'_>| match &spec.xdp_interface {
        Some(At { value, pos }) if value.is_empty() || value.len() > 15 || value.contains('/') => {
            errors.push(*pos, format!("{value:?} is not an interface name"));
            None
        }
        Some(iface) => Some(XdpSettings {
            interface: iface.value.clone(),
            attach,
        }),
        None => {
            let pos = spec.mode.as_ref().map_or(spec.pos, |m| m.pos);
            errors.push(pos, format!("dataplane mode {mode:?} needs xdp_interface"));
            None
        }
    };
    match mode {
        "none" | "ipvs" => {
            if let Some(iface) = &spec.xdp_interface {
                errors.push(
                    iface.pos,
                    format!("xdp_interface is only used in the xdp modes, not {mode:?}"),
                );
            }
            Some(if mode == "none" {
                Dataplane::None
            } else {
                Dataplane::Ipvs
            })
        }
        "xdp" => xdp(errors).map(Dataplane::Xdp),
        "xdp+ipvs" => xdp(errors).map(Dataplane::XdpIpvs),
        other => {
            let pos = spec.mode.as_ref().map_or(spec.pos, |m| m.pos);
            errors.push(
                pos,
                format!("dataplane mode must be none, ipvs, xdp or xdp+ipvs, not {other:?}"),
            );
            None
        }
    }
}

fn address(at: &At<String>, what: &str, errors: &mut Errors<'_>) -> Option<IpAddr> {
    match at.value.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            errors.push(
                at.pos,
                format!("{what} {:?} is not an IPv4 or IPv6 address", at.value),
            );
            None
        }
    }
}

fn port(at: &At<i64>, errors: &mut Errors<'_>) -> Option<u16> {
    let port = u16::try_from(at.value).ok();
    if port.is_none() {
        errors.push(at.pos, format!("port {} is out of range 0-65535", at.value));
    }
    port
}

fn virtual_server(spec: &VirtualServerSpec, errors: &mut Errors<'_>) -> Option<VirtualServer> {
    let before = errors.list.len();
    let ip = address(&spec.address, "virtual server address", errors);
    let port = port(&spec.port, errors);
    let protocol = match spec.protocol.as_ref() {
        None => Some(Protocol::Tcp),
        Some(At { value, pos }) => match value.to_ascii_lowercase().as_str() {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "sctp" => Some(Protocol::Sctp),
            _ => {
                errors.push(
                    *pos,
                    format!("protocol must be tcp, udp or sctp, not {value:?}"),
                );
                None
            }
        },
    };
    let scheduler = match spec.scheduler.as_ref() {
        None => Some(Scheduler::default()),
        Some(At { value, pos }) => {
            let s = Scheduler::new(value);
            if s.is_none() {
                let known = Scheduler::KNOWN.join(", ");
                errors.push(
                    *pos,
                    format!("unknown scheduler {value:?} (IPVS has {known})"),
                );
            }
            s
        }
    };
    let forwarding = match spec.forwarding.as_ref() {
        None => Some(Forwarding::Nat),
        Some(At { value, pos }) => match value.to_ascii_lowercase().as_str() {
            "nat" => Some(Forwarding::Nat),
            "dr" => Some(Forwarding::Dr),
            "tun" => Some(Forwarding::Tun),
            _ => {
                errors.push(
                    *pos,
                    format!("forwarding must be nat, dr or tun, not {value:?}"),
                );
                None
            }
        },
    };
    let mut reals = Vec::new();
    let mut seen = HashSet::new();
    for rs in &spec.real_servers {
        let Some(real) = real_server(rs, errors) else {
            continue;
        };
        if let Some(vip) = ip
            && !same_family(vip, real.addr.ip())
        {
            errors.push(
                rs.address.pos,
                format!(
                    "real server {} is not of the VIP's address family",
                    real.addr
                ),
            );
            continue;
        }
        if !seen.insert(real.addr) {
            errors.push(rs.pos, format!("duplicate real server {}", real.addr));
            continue;
        }
        reals.push(real);
    }
    if errors.list.len() != before {
        return None;
    }
    Some(VirtualServer {
        vip: SocketAddr::new(ip?, port?),
        protocol: protocol?,
        scheduler: scheduler?,
        forwarding: forwarding?,
        real_servers: reals,
    })
}

fn real_server(spec: &RealServerSpec, errors: &mut Errors<'_>) -> Option<RealServer> {
    let ip = address(&spec.address, "real server address", errors);
    let port = port(&spec.port, errors);
    let weight = match spec.weight.as_ref() {
        None => Some(Weight::default()),
        Some(At { value, pos }) => {
            let w = Weight::new(*value);
            if w.is_none() {
                errors.push(*pos, format!("weight {value} is out of range 0-65535"));
            }
            w
        }
    };
    Some(RealServer {
        addr: SocketAddr::new(ip?, port?),
        weight: weight?,
    })
}
