//! The XDP backend: the reconciler's desired table made visible to the XDP program's maps.
//!
//! It records every operation in the table it reports (so the reconciler's plan converges for
//! services XDP does not forward) and, once per batch ([`Backend::finish`]), programs the
//! services that changed: TCP and UDP services whose real servers are all `DR` or `TUN` (ipip)
//! get a VIP entry and a Maglev table of their live real servers (weight > 0); the others (NAT,
//! firewall marks, SCTP, GUE/GRE tunnels) stay with IPVS and are reported in
//! [`XdpBackend::passed_up`]. Only the Maglev slots that changed are written.
//!
//! Real servers are identified by address and get an id shared by every VIP that uses them.
//! A real server no VIP uses any more keeps its entry in `LB_REALS` until its id is reused,
//! oldest freed first, so flows the connection table still sends it carry on (a real server
//! that failed its check gets no new flow; established ones finish). The MAC to reach each one
//! comes from [`NextHops`]; one not resolved yet gets no slot and is retried on each resync.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::IpAddr,
};

use lb_common::{MAX_REALS, RealInfo, Settings, VIP_F_ENCAP, VipInfo, VipKey};
use tracing::{debug, info, warn};

use super::{Backend, BackendError, Op, ServiceState, Table};
use crate::{
    dataplane::{
        maglev::{self, Endpoint},
        xdp::{XdpError, XdpMaps, vip_key},
    },
    model::{Forwarding, Protocol, ServiceKey, TunnelKind},
};

/// How to reach a real server from the director.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Egress interface.
    pub ifindex: u32,
    /// The real server's MAC when on link, else its gateway's.
    pub mac: [u8; 6],
    /// The egress interface's MAC.
    pub src_mac: [u8; 6],
    /// Whether the real server is on the same L2 (direct routing needs it).
    pub on_link: bool,
}

/// Finds the next hop of a real server (the kernel's routes and neighbours; a table in tests).
pub trait NextHops: Send {
    /// The next hop to `addr`; `Ok(None)` while its MAC is being resolved.
    fn resolve(
        &mut self,
        addr: IpAddr,
    ) -> impl Future<Output = Result<Option<NextHop>, String>> + Send;
}

/// How a service is forwarded by XDP, if it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Direct,
    Encap,
}

/// The method for `state`'s real servers, or why XDP leaves the service to IPVS.
fn method(key: &ServiceKey, state: &ServiceState) -> Result<Method, &'static str> {
    match key {
        ServiceKey::Addr {
            protocol: Protocol::Sctp,
            ..
        } => return Err("SCTP"),
        ServiceKey::Fwmark { .. } => return Err("a firewall-mark service"),
        ServiceKey::Addr { .. } => {}
    }
    let mut methods = state.dests.values().map(|d| match d.forwarding {
        Forwarding::Dr => Ok(Method::Direct),
        Forwarding::Tun(t) if t.kind == TunnelKind::Ipip => Ok(Method::Encap),
        Forwarding::Tun(_) => Err("a GUE or GRE tunnel"),
        Forwarding::Nat => Err("NAT"),
    });
    let first = methods.next().unwrap_or(Ok(Method::Direct))?;
    if methods.any(|m| m != Ok(first)) {
        return Err("real servers with different forwarding methods");
    }
    Ok(first)
}

/// Where the backend put things, for status and statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XdpView {
    /// VIP slot of each service XDP forwards.
    pub vips: BTreeMap<ServiceKey, u32>,
    /// Id of each real server (also of those no VIP uses while their id is not reused).
    pub reals: BTreeMap<IpAddr, u32>,
    /// Services left to IPVS, and why.
    pub passed_up: BTreeMap<ServiceKey, &'static str>,
}

/// The XDP program's settings for `mtu` and the encapsulation sources (address and prefix
/// length; the host bits, at most the last 32, come from each flow's hash).
pub fn settings(
    mtu: u32,
    source_v4: Option<(std::net::Ipv4Addr, u8)>,
    source_v6: Option<(std::net::Ipv6Addr, u8)>,
) -> Settings {
    let mut s = Settings {
        mtu,
        ..Settings::default()
    };
    if let Some((addr, len)) = source_v4 {
        let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        s.encap_src_v4 = (u32::from(addr) & !host).to_be_bytes();
        s.encap_src_v4_hash_mask = host.to_be_bytes();
    }
    if let Some((addr, len)) = source_v6 {
        let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        s.encap_src_v6 = (u128::from(addr) & !host).to_be_bytes();
        // Only the last 32 bits spread flows.
        s.encap_src_v6_hash_mask = ((host & 0xffff_ffff) as u32).to_be_bytes();
    }
    s
}

/// The address of a real-server entry.
fn real_addr(real: &RealInfo) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(real.addr);
    match (real.family, v6.to_ipv4_mapped()) {
        (4, Some(v4)) => IpAddr::V4(v4),
        _ => IpAddr::V6(v6),
    }
}

/// A real server's id and what the XDP program knows of it.
#[derive(Clone, Copy, Debug)]
struct RealSlot {
    id: u32,
    /// `None` until its next hop is resolved.
    info: Option<RealInfo>,
    /// On the director's L2 (direct routing needs it).
    on_link: bool,
}

/// Programs the XDP maps from the reconciler's operations.
pub struct XdpBackend<N> {
    maps: XdpMaps,
    next_hops: N,
    /// Every operation applied, XDP-forwarded or not: what `observe` reports.
    table: Table,
    dirty: BTreeSet<ServiceKey>,
    /// VIP slots of the services XDP forwards, and their methods.
    vips: BTreeMap<ServiceKey, (u32, Method)>,
    free_vips: BTreeSet<u32>,
    reals: BTreeMap<IpAddr, RealSlot>,
    free_reals: VecDeque<u32>,
    /// Real servers no VIP uses whose ids (and `LB_REALS` entries) are not reused yet: their
    /// flows still reach them, their counters still count, and they get the id back if they
    /// return.
    retired: BTreeMap<IpAddr, u32>,
    passed_up: BTreeMap<ServiceKey, &'static str>,
    view: tokio::sync::watch::Sender<XdpView>,
    /// VIPs found in the maps at start (an earlier lbd's, pinned): each keeps its slot and
    /// table when the configuration still has it; the rest go after the first batch.
    adopted_vips: BTreeMap<VipKey, u32>,
}

impl<N> std::fmt::Debug for XdpBackend<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpBackend")
            .field("services", &self.table.len())
            .field("vips", &self.vips.len())
            .field("reals", &self.reals.len())
            .finish_non_exhaustive()
    }
}

impl<N: NextHops> XdpBackend<N> {
    /// Takes over `maps`. What an earlier lbd left in them (pinned maps) is adopted: its real
    /// servers keep their ids and its VIPs their slots and tables, so established flows keep
    /// their real servers and a table that did not change is not rewritten.
    pub fn new(mut maps: XdpMaps, next_hops: N, settings: &Settings) -> Result<Self, XdpError> {
        maps.set_settings(settings)?;
        let capacity = maps.capacity();
        let adopted_vips: BTreeMap<VipKey, u32> = maps
            .vips()
            .into_iter()
            .filter(|(_, info)| info.index < capacity.vips)
            .map(|(key, info)| (key, info.index))
            .collect();
        let mut retired = BTreeMap::new();
        for (id, real) in maps.reals()? {
            retired.insert(real_addr(&real), id);
        }
        let in_use: BTreeSet<u32> = retired.values().copied().collect();
        // Ids an earlier lbd used are reused last.
        let free_reals: VecDeque<u32> = (1..MAX_REALS)
            .filter(|id| !in_use.contains(id))
            .chain(in_use.iter().copied())
            .collect();
        let free_vips = (0..capacity.vips)
            .filter(|slot| !adopted_vips.values().any(|s| s == slot))
            .collect();
        if !adopted_vips.is_empty() || !retired.is_empty() {
            info!(
                vips = adopted_vips.len(),
                real_servers = retired.len(),
                "XDP maps adopted from the previous lbd"
            );
        }
        Ok(Self {
            maps,
            next_hops,
            table: Table::new(),
            dirty: BTreeSet::new(),
            vips: BTreeMap::new(),
            free_vips,
            reals: BTreeMap::new(),
            free_reals,
            retired,
            passed_up: BTreeMap::new(),
            view: tokio::sync::watch::Sender::new(XdpView::default()),
            adopted_vips,
        })
    }

    /// Where things are, updated after every batch.
    pub fn view(&self) -> tokio::sync::watch::Receiver<XdpView> {
        self.view.subscribe()
    }

    fn error(op: &str, e: impl std::fmt::Display) -> BackendError {
        BackendError {
            op: op.to_owned(),
            message: e.to_string(),
        }
    }

    /// Gives `addr` an id (the oldest freed one) and resolves its next hop if it has none.
    async fn ensure_real(&mut self, addr: IpAddr) -> Result<RealSlot, BackendError> {
        let slot = match self.reals.get(&addr) {
            Some(slot) => *slot,
            None => {
                let id = match self.retired.remove(&addr) {
                    Some(id) => {
                        self.free_reals.retain(|&free| free != id);
                        id
                    }
                    None => {
                        let id = self
                            .free_reals
                            .pop_front()
                            .ok_or_else(|| Self::error("adding a real server", "all ids in use"))?;
                        self.retired.retain(|_, retired| *retired != id);
                        id
                    }
                };
                RealSlot {
                    id,
                    info: None,
                    on_link: false,
                }
            }
        };
        let slot = match slot.info {
            Some(_) => slot,
            None => match self.resolve(addr).await {
                Some((info, on_link)) => RealSlot {
                    info: Some(info),
                    on_link,
                    ..slot
                },
                None => slot,
            },
        };
        if let Some(info) = &slot.info {
            self.maps
                .set_real(slot.id, info)
                .map_err(|e| Self::error("writing a real server", e))?;
        }
        self.reals.insert(addr, slot);
        Ok(slot)
    }

    async fn resolve(&mut self, addr: IpAddr) -> Option<(RealInfo, bool)> {
        match self.next_hops.resolve(addr).await {
            Ok(Some(hop)) => {
                let family = if addr.is_ipv4() { 4 } else { 6 };
                let octets = match addr {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                    IpAddr::V6(v6) => v6.octets(),
                };
                debug!(%addr, ifindex = hop.ifindex, on_link = hop.on_link, "real server's next hop");
                let info = RealInfo {
                    addr: octets,
                    mac: hop.mac,
                    src_mac: hop.src_mac,
                    ifindex: hop.ifindex,
                    family,
                    _pad: [0; 3],
                };
                Some((info, hop.on_link))
            }
            Ok(None) => None,
            Err(e) => {
                warn!(%addr, error = %e, "no next hop to the real server");
                None
            }
        }
    }

    /// Programs one service as the table now holds it.
    async fn program(&mut self, key: ServiceKey) -> Result<(), BackendError> {
        let state = self.table.get(&key).cloned();
        let wanted = match &state {
            None => None,
            Some(state) => match method(&key, state) {
                Ok(m) => Some((state, m)),
                Err(why) => {
                    if self.passed_up.insert(key, why).is_none() {
                        info!(service = ?key, reason = why, "left to IPVS: the XDP path does not forward it");
                    }
                    None
                }
            },
        };
        let Some((state, method)) = wanted else {
            self.unprogram(&key)?;
            return Ok(());
        };
        self.passed_up.remove(&key);
        let ServiceKey::Addr { addr, protocol } = key else {
            return Ok(());
        };
        let vip = vip_key(addr.ip(), addr.port(), protocol);
        let slot = match (self.vips.get(&key), self.adopted_vips.remove(&vip)) {
            (Some((slot, _)), _) => *slot,
            (None, Some(adopted)) => adopted,
            (None, None) => self
                .free_vips
                .pop_first()
                .ok_or_else(|| Self::error("adding a VIP", "the XDP VIP map is full"))?,
        };
        self.vips.insert(key, (slot, method));
        let family = if addr.is_ipv4() { 4 } else { 6 };
        let mut endpoints = Vec::with_capacity(state.dests.len());
        for (dest, d) in &state.dests {
            let real = self.ensure_real(dest.ip()).await?;
            if method == Method::Direct && real.info.is_some() && !real.on_link {
                warn!(real = %dest.ip(), service = ?key, "direct routing needs the real server on the director's L2; it gets no flow");
            }
            let usable = real
                .info
                .is_some_and(|i| i.family == family && (method == Method::Encap || real.on_link));
            if usable && d.weight > 0 {
                endpoints.push(Endpoint {
                    id: real.id,
                    weight: d.weight,
                    hash: maglev::endpoint_hash(dest.ip()),
                });
            }
        }
        let ring = maglev::table(&endpoints, self.maps.capacity().ring_size);
        let changed = maglev::write_delta(self.maps.ring_mut(slot), &ring);
        let flags = if method == Method::Encap {
            VIP_F_ENCAP
        } else {
            0
        };
        self.maps
            .set_vip(&vip, VipInfo { index: slot, flags })
            .map_err(|e| Self::error("writing a VIP", e))?;
        debug!(service = ?key, slot, live = endpoints.len(), changed, "Maglev table written");
        Ok(())
    }

    /// Removes a service from the maps if it was programmed.
    fn unprogram(&mut self, key: &ServiceKey) -> Result<(), BackendError> {
        let Some((slot, _)) = self.vips.remove(key) else {
            return Ok(());
        };
        if let ServiceKey::Addr { addr, protocol } = key {
            self.maps
                .remove_vip(&vip_key(addr.ip(), addr.port(), *protocol))
                .map_err(|e| Self::error("removing a VIP", e))?;
        }
        self.maps.ring_mut(slot).fill(0);
        self.free_vips.insert(slot);
        Ok(())
    }

    /// Resolves the next hop of every resolved real server again and rewrites the entries that
    /// changed. One that cannot be resolved now keeps its last next hop.
    async fn refresh_next_hops(&mut self) {
        let resolved: Vec<(IpAddr, RealSlot)> = self
            .reals
            .iter()
            .filter(|(_, r)| r.info.is_some())
            .map(|(a, r)| (*a, *r))
            .collect();
        for (addr, slot) in resolved {
            let Some((info, on_link)) = self.resolve(addr).await else {
                continue;
            };
            if slot.info == Some(info) && slot.on_link == on_link {
                continue;
            }
            if let Err(e) = self.maps.set_real(slot.id, &info) {
                warn!(real = %addr, error = %e, "rewriting a real server's next hop");
                continue;
            }
            info!(real = %addr, mac = ?info.mac, ifindex = info.ifindex, "real server's next hop changed");
            self.reals.insert(
                addr,
                RealSlot {
                    info: Some(info),
                    on_link,
                    ..slot
                },
            );
            if on_link != slot.on_link {
                // Direct routing's use of it changes: its services' tables are redone.
                let services: Vec<ServiceKey> = self
                    .vips
                    .keys()
                    .filter(|k| {
                        self.table
                            .get(k)
                            .is_some_and(|s| s.dests.keys().any(|d| d.ip() == addr))
                    })
                    .copied()
                    .collect();
                self.dirty.extend(services);
            }
        }
    }

    /// Frees the ids of real servers no programmed service uses (their entries stay).
    fn free_unused_reals(&mut self) {
        let used: BTreeSet<IpAddr> = self
            .vips
            .keys()
            .filter_map(|k| self.table.get(k))
            .flat_map(|s| s.dests.keys().map(|d| d.ip()))
            .collect();
        let unused: Vec<IpAddr> = self
            .reals
            .keys()
            .filter(|a| !used.contains(a))
            .copied()
            .collect();
        for addr in unused {
            if let Some(slot) = self.reals.remove(&addr) {
                self.free_reals.push_back(slot.id);
                self.retired.insert(addr, slot.id);
            }
        }
    }
}

impl<N: NextHops> Backend for XdpBackend<N> {
    fn name(&self) -> &'static str {
        "xdp"
    }

    async fn observe(&mut self) -> Result<Table, BackendError> {
        // A resync also looks at every resolved real server's next hop again: a replaced
        // server's new MAC, a route that moved.
        self.refresh_next_hops().await;
        // A resync retries the services that failed and the real servers whose next hop was
        // not known yet.
        let pending: BTreeSet<ServiceKey> = self
            .vips
            .keys()
            .filter(|k| {
                self.table.get(k).is_some_and(|s| {
                    s.dests
                        .keys()
                        .any(|d| self.reals.get(&d.ip()).is_some_and(|r| r.info.is_none()))
                })
            })
            .copied()
            .collect();
        self.dirty.extend(pending);
        if !self.dirty.is_empty() {
            self.finish().await?;
        }
        Ok(self.table.clone())
    }

    async fn apply(&mut self, op: &Op) -> Result<(), BackendError> {
        op.apply_to(&mut self.table)?;
        self.dirty.insert(op.service());
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), BackendError> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut first_error = None;
        for key in dirty {
            if let Err(e) = self.program(key).await {
                // Retried with the next batch or at the next resync.
                self.dirty.insert(key);
                first_error.get_or_insert(e);
            }
        }
        // VIPs of the earlier lbd that this configuration does not have.
        for (vip, slot) in std::mem::take(&mut self.adopted_vips) {
            if let Err(e) = self.maps.remove_vip(&vip) {
                first_error.get_or_insert(Self::error("removing an adopted VIP", e));
            }
            self.maps.ring_mut(slot).fill(0);
            self.free_vips.insert(slot);
        }
        self.free_unused_reals();
        self.view.send_replace(XdpView {
            vips: self.vips.iter().map(|(k, (slot, _))| (*k, *slot)).collect(),
            reals: self
                .reals
                .iter()
                .map(|(a, r)| (*a, r.id))
                .chain(self.retired.iter().map(|(a, id)| (*a, *id)))
                .collect(),
            passed_up: self.passed_up.clone(),
        });
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encapsulation_sources_keep_the_prefix_and_spread_the_host_bits() {
        let s = settings(
            1500,
            Some(([198, 51, 100, 77].into(), 24)),
            Some(("2001:db8::1:0".parse().unwrap(), 112)),
        );
        assert_eq!(s.mtu, 1500);
        assert_eq!(s.encap_src_v4, [198, 51, 100, 0]);
        assert_eq!(s.encap_src_v4_hash_mask, [0, 0, 0, 255]);
        assert_eq!(
            s.encap_src_v6[..14],
            "2001:db8::1:0"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()[..14]
        );
        assert_eq!(s.encap_src_v6_hash_mask, [0, 0, 255, 255]);
        let single = settings(1500, Some(([192, 0, 2, 1].into(), 32)), None);
        assert_eq!(
            (single.encap_src_v4, single.encap_src_v4_hash_mask),
            ([192, 0, 2, 1], [0; 4])
        );
    }
}
