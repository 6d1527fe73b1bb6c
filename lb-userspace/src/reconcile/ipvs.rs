//! The IPVS backend: the reconciler's table to and from the kernel's, over generic netlink.
//!
//! Netlink calls to the local kernel answer in microseconds, so they run inline on the
//! reconciler's task.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Backend, BackendError, DestSettings, Op, ServiceSettings, ServiceState, Table};
use crate::{
    ipvs::{
        client::{IpvsClient, IpvsError},
        msg::{Dest, IP_VS_CONN_F_DROUTE, IP_VS_CONN_F_MASQ, IP_VS_CONN_F_TUNNEL, Service},
    },
    model::{Family, Forwarding, Protocol, ServiceKey, Tunnel, TunnelChecksum, TunnelKind},
};

/// Programs the kernel's IPVS.
#[derive(Debug)]
pub struct IpvsBackend {
    client: IpvsClient,
}

impl IpvsBackend {
    /// Sets the connection timeouts (`lvs_timeouts`; 0 leaves one as it is).
    pub fn set_timeouts(&self, t: crate::model::IpvsTimeouts) -> Result<(), IpvsError> {
        self.client.set_timeouts(t.tcp, t.tcpfin, t.udp)
    }

    /// Connects to IPVS in the current network namespace.
    pub fn connect() -> Result<Self, IpvsError> {
        Ok(Self {
            client: IpvsClient::connect()?,
        })
    }
}

fn error(op: &Op, e: IpvsError) -> BackendError {
    // The kernel answers ENOENT to a service whose scheduler module it cannot load.
    let hint = match (op, &e) {
        (Op::AddService(_, s) | Op::EditService(_, s), IpvsError::Kernel { errno, .. })
            if *errno == libc::ENOENT =>
        {
            format!(
                " (no scheduler {:?}: is the kernel module ip_vs_{} available?)",
                s.0.scheduler, s.0.scheduler
            )
        }
        _ => String::new(),
    };
    BackendError {
        op: describe(op),
        message: format!("{e}{hint}"),
    }
}

/// An operation in words, as `ipvsadm` would name it.
fn describe(op: &Op) -> String {
    match op {
        Op::AddService(k, _) => format!("adding service {k}"),
        Op::EditService(k, _) => format!("editing service {k}"),
        Op::AddDest(k, a, _) => format!("adding real server {a} to {k}"),
        Op::EditDest(k, a, _) => format!("editing real server {a} of {k}"),
        Op::DelDest(k, a) => format!("removing real server {a} from {k}"),
        Op::DelService(k) => format!("removing service {k}"),
    }
}

/// The kernel's service for `key` with `settings`.
pub fn service(key: &ServiceKey, settings: &ServiceSettings) -> Service {
    let mut svc = match key {
        ServiceKey::Addr { addr, protocol } => Service::new(
            addr.ip(),
            u16::from(protocol.number()),
            addr.port(),
            &settings.scheduler,
        ),
        ServiceKey::Fwmark { mark, family } => {
            let any = match family {
                Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            Service::fwmark(any, *mark, &settings.scheduler)
        }
    };
    svc.flags = settings.flags;
    svc.timeout = settings.timeout;
    // IPv4: a __be32 mask; IPv6: the prefix length.
    svc.netmask = match key.family() {
        Family::V4 => u32::MAX
            .checked_shl(32 - u32::from(settings.prefix.min(32)))
            .unwrap_or(0)
            .to_be(),
        Family::V6 => u32::from(settings.prefix),
    };
    svc.pe_name.clone_from(&settings.pe_name);
    svc
}

/// The kernel's destination for `addr` with `d`.
pub fn dest(addr: SocketAddr, d: &DestSettings) -> Dest {
    let (fwd_method, tunnel) = match d.forwarding {
        Forwarding::Nat => (IP_VS_CONN_F_MASQ, Tunnel::default()),
        Forwarding::Dr => (IP_VS_CONN_F_DROUTE, Tunnel::default()),
        Forwarding::Tun(t) => (IP_VS_CONN_F_TUNNEL, t),
    };
    let (tun_type, tun_port) = match tunnel.kind {
        TunnelKind::Ipip => (0, 0),
        TunnelKind::Gue(port) => (1, port),
        TunnelKind::Gre => (2, 0),
    };
    let tun_flags = match tunnel.checksum {
        TunnelChecksum::None => 0,
        TunnelChecksum::Csum => 1,
        TunnelChecksum::Remcsum => 2,
    };
    Dest {
        addr: addr.ip(),
        port: addr.port(),
        fwd_method,
        weight: d.weight,
        u_thresh: d.upper_threshold,
        l_thresh: d.lower_threshold,
        tun_type,
        tun_port,
        tun_flags,
    }
}

/// The service's key, if lbd can model it (TCP, UDP, SCTP or a firewall mark).
pub fn key_of(svc: &Service) -> Option<ServiceKey> {
    if svc.fwmark != 0 {
        return Some(ServiceKey::Fwmark {
            mark: svc.fwmark,
            family: Family::of(svc.addr),
        });
    }
    let protocol = match svc.protocol {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        132 => Protocol::Sctp,
        _ => return None,
    };
    Some(ServiceKey::Addr {
        addr: SocketAddr::new(svc.addr, svc.port),
        protocol,
    })
}

fn settings_of(svc: &Service) -> ServiceSettings {
    let prefix = if svc.addr.is_ipv4() {
        u32::from_be(svc.netmask).leading_ones() as u8
    } else {
        svc.netmask.min(128) as u8
    };
    ServiceSettings {
        scheduler: svc.scheduler.clone(),
        flags: svc.flags & super::flags::OWNED,
        timeout: svc.timeout,
        prefix,
        pe_name: svc.pe_name.clone(),
    }
}

fn dest_settings_of(d: &Dest) -> DestSettings {
    let forwarding = match d.fwd_method {
        IP_VS_CONN_F_DROUTE => Forwarding::Dr,
        IP_VS_CONN_F_TUNNEL => Forwarding::Tun(Tunnel {
            kind: match d.tun_type {
                1 => TunnelKind::Gue(d.tun_port),
                2 => TunnelKind::Gre,
                _ => TunnelKind::Ipip,
            },
            // IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM (2) and _CSUM (1); remote checksum offload
            // reads back with both.
            checksum: if d.tun_flags & 2 != 0 {
                TunnelChecksum::Remcsum
            } else if d.tun_flags & 1 != 0 {
                TunnelChecksum::Csum
            } else {
                TunnelChecksum::None
            },
        }),
        _ => Forwarding::Nat,
    };
    DestSettings {
        weight: d.weight,
        forwarding,
        upper_threshold: d.u_thresh,
        lower_threshold: d.l_thresh,
    }
}

impl Backend for IpvsBackend {
    fn name(&self) -> &'static str {
        "ipvs"
    }

    async fn observe(&mut self) -> Result<Table, BackendError> {
        let failed = |e: IpvsError| BackendError {
            op: "listing IPVS".to_owned(),
            message: e.to_string(),
        };
        let mut table = Table::new();
        for svc in self.client.services().map_err(failed)? {
            let Some(key) = key_of(&svc) else { continue };
            let dests = self
                .client
                .dests(&svc)
                .map_err(failed)?
                .iter()
                .map(|d| (SocketAddr::new(d.addr, d.port), dest_settings_of(d)))
                .collect();
            table.insert(
                key,
                std::sync::Arc::new(ServiceState {
                    settings: settings_of(&svc),
                    dests,
                }),
            );
        }
        Ok(table)
    }

    async fn apply(&mut self, op: &Op) -> Result<(), BackendError> {
        // A destination command names its service by key only; the settings do not matter.
        let bare = |k: &ServiceKey| {
            service(
                k,
                &ServiceSettings {
                    scheduler: String::new(),
                    flags: 0,
                    timeout: 0,
                    prefix: 128,
                    pe_name: None,
                },
            )
        };
        let result = match op {
            Op::AddService(k, s) => self.client.new_service(&service(k, &s.0)),
            Op::EditService(k, s) => self.client.set_service(&service(k, &s.0)),
            Op::AddDest(k, a, d) => self.client.new_dest(&bare(k), &dest(*a, &d.0)),
            Op::EditDest(k, a, d) => self.client.set_dest(&bare(k), &dest(*a, &d.0)),
            Op::DelDest(k, a) => {
                let d = DestSettings {
                    weight: 0,
                    forwarding: Forwarding::Nat,
                    upper_threshold: 0,
                    lower_threshold: 0,
                };
                self.client.del_dest(&bare(k), &dest(*a, &d))
            }
            Op::DelService(k) => self.client.del_service(&bare(k)),
        };
        result.map_err(|e| error(op, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_scheduler_is_named() {
        let key = ServiceKey::Addr {
            addr: "203.0.113.1:80".parse().unwrap(),
            protocol: Protocol::Tcp,
        };
        let settings = ServiceSettings {
            scheduler: "twos".into(),
            flags: 0,
            timeout: 0,
            prefix: 32,
            pe_name: None,
        };
        let op = Op::AddService(key, super::super::OrdSettings(settings));
        let e = error(
            &op,
            IpvsError::Kernel {
                op: "IPVS_CMD_NEW_SERVICE",
                errno: libc::ENOENT,
            },
        );
        assert_eq!(
            e.to_string(),
            "adding service [203.0.113.1]:tcp:80: IPVS_CMD_NEW_SERVICE: kernel error ENOENT: No such file or directory (os error 2) (no scheduler \"twos\": is the kernel module ip_vs_twos available?)"
        );
    }

    #[test]
    fn settings_survive_the_trip_through_the_kernel_s_model() {
        let key = ServiceKey::Addr {
            addr: "203.0.113.1:80".parse().unwrap(),
            protocol: Protocol::Tcp,
        };
        let settings = ServiceSettings {
            scheduler: "sh".into(),
            flags: super::super::flags::PERSISTENT | super::super::flags::SCHED2,
            timeout: 360,
            prefix: 24,
            pe_name: Some("sip".into()),
        };
        let svc = service(&key, &settings);
        assert_eq!(
            svc.netmask.to_ne_bytes(),
            [255, 255, 255, 0],
            "__be32 255.255.255.0"
        );
        assert_eq!(key_of(&svc), Some(key));
        assert_eq!(settings_of(&svc), settings);
        let mark = ServiceKey::Fwmark {
            mark: 7,
            family: Family::V6,
        };
        assert_eq!(key_of(&service(&mark, &settings)), Some(mark));
        let d = DestSettings {
            weight: 3,
            forwarding: Forwarding::Tun(Tunnel {
                kind: TunnelKind::Gue(6080),
                checksum: TunnelChecksum::Remcsum,
            }),
            upper_threshold: 100,
            lower_threshold: 10,
        };
        assert_eq!(
            dest_settings_of(&dest("192.0.2.2:80".parse().unwrap(), &d)),
            d
        );
    }
}
