//! One virtual server's real servers as health makes them: who is alive, at what weight,
//! whether the pool has quorum, and the IPVS table that follows. Pure.
//!
//! keepalived's rules (`ipwrapper.c`): a real server is alive when all its checkers are up; a
//! dead one leaves the service, or stays at weight 0 with `inhibit_on_failure`. Quorum is the
//! sum of live weights: it is lost below `quorum - hysteresis` and regained at
//! `quorum + hysteresis`. While it is lost a `sorry_server` takes the traffic and the live real
//! servers step aside; `sorry_server_inhibit` keeps the sorry server at weight 0 when unused.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use super::state::WeightChange;
use crate::{
    model::{RealServer, ServiceKey, VirtualServer, Weight},
    reconcile::{DestSettings, ServiceSettings, ServiceState, Table},
};

/// What changed in a pool, for notifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolEvent {
    /// Real server (index) came up.
    RealUp(usize),
    /// Real server (index) went down.
    RealDown(usize),
    /// Quorum gained.
    QuorumUp,
    /// Quorum lost.
    QuorumDown,
}

#[derive(Clone, Debug)]
struct RealState {
    checks_up: Vec<bool>,
    weights: Vec<Option<WeightChange>>,
    alive: bool,
}

/// A virtual server's live state.
#[derive(Clone, Debug)]
pub struct Pool {
    vs: Arc<VirtualServer>,
    reals: Vec<RealState>,
    quorum_up: bool,
    /// Real servers an operator drained: weight 0 in the table whatever their health (no new
    /// connections; IPVS and the XDP connection table keep the established ones).
    drained: Vec<bool>,
    /// Taken out of service by an operator: none of its services is in the table.
    disabled: bool,
}

impl Pool {
    /// The pool before any probe: every real server as its checkers start (up unless alpha).
    pub fn new(vs: impl Into<Arc<VirtualServer>>) -> Self {
        let vs = vs.into();
        let reals: Vec<RealState> = vs
            .real_servers
            .iter()
            .map(|rs| {
                let checks_up: Vec<bool> = rs.checkers.iter().map(|c| !c.alpha).collect();
                RealState {
                    alive: checks_up.iter().all(|&u| u),
                    weights: vec![None; rs.checkers.len()],
                    checks_up,
                }
            })
            .collect();
        let drained = vec![false; reals.len()];
        let mut pool = Self {
            vs,
            reals,
            quorum_up: false,
            drained,
            disabled: false,
        };
        pool.quorum_up = pool.live_weight() >= u64::from(pool.vs.quorum);
        pool
    }

    /// Continues `old` (the same virtual server before a reload): real servers with the same
    /// address keep their checkers' verdicts (checker by checker, where the checker is
    /// unchanged) and their drain; out of service stays out of service, and quorum moves
    /// from where it was. Returns how many real servers kept their health, and the changes
    /// to notify (a real server whose failing checker was removed comes up, say).
    pub fn inherit(&mut self, old: &Self) -> (usize, Vec<PoolEvent>) {
        let mut events = Vec::new();
        let mut kept = 0;
        self.disabled = old.disabled;
        for (i, rs) in self.vs.real_servers.iter().enumerate() {
            // Where it was: usually at the same place (linear over 30,000 real servers).
            let same_place = old
                .vs
                .real_servers
                .get(i)
                .is_some_and(|o| o.addr == rs.addr);
            let found = if same_place {
                Some(i)
            } else {
                old.vs.real_servers.iter().position(|o| o.addr == rs.addr)
            };
            let Some(j) = found else {
                continue;
            };
            kept += 1;
            self.drained[i] = old.drained[j];
            let state = &mut self.reals[i];
            for (c, checker) in rs.checkers.iter().enumerate() {
                let same = old.vs.real_servers[j]
                    .checkers
                    .iter()
                    .position(|o| o.same_probe(checker));
                if let Some(k) = same {
                    state.checks_up[c] = old.reals[j].checks_up[k];
                    state.weights[c] = old.reals[j].weights[k];
                }
            }
            state.alive = state.checks_up.iter().all(|&u| u);
            if state.alive != old.reals[j].alive {
                events.push(if state.alive {
                    PoolEvent::RealUp(i)
                } else {
                    PoolEvent::RealDown(i)
                });
            }
        }
        self.quorum_up = old.quorum_up;
        events.extend(self.requorum());
        (kept, events)
    }

    /// Checker `check` of real server `real`: its verdict as the pool holds it.
    pub fn check_up(&self, real: usize, check: usize) -> Option<bool> {
        self.reals.get(real)?.checks_up.get(check).copied()
    }

    /// Whether this pool is `vs`'s: the same allocation, unchanged by a reload.
    pub fn is(&self, vs: &Arc<VirtualServer>) -> bool {
        Arc::ptr_eq(&self.vs, vs)
    }

    /// The virtual server.
    pub fn virtual_server(&self) -> &VirtualServer {
        &self.vs
    }

    /// Whether real server `index` is alive.
    pub fn is_alive(&self, index: usize) -> bool {
        self.reals.get(index).is_some_and(|r| r.alive)
    }

    /// Whether real server `index` is drained.
    pub fn is_drained(&self, index: usize) -> bool {
        self.drained.get(index).copied().unwrap_or(false)
    }

    /// Drains real server `index` (or undrains it); whether that changed anything.
    pub fn set_drained(&mut self, index: usize, drained: bool) -> bool {
        match self.drained.get_mut(index) {
            Some(d) if *d != drained => {
                *d = drained;
                true
            }
            _ => false,
        }
    }

    /// Whether the virtual server is out of service.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// Takes the virtual server out of service (its services leave the data plane) or back;
    /// whether that changed anything. Its checks keep running.
    pub fn set_disabled(&mut self, disabled: bool) -> bool {
        let changed = self.disabled != disabled;
        self.disabled = disabled;
        changed
    }

    /// Whether the pool has quorum.
    pub fn has_quorum(&self) -> bool {
        self.quorum_up
    }

    /// Real server `index`'s weight now: configured, changed by its dynamic checkers.
    pub fn weight(&self, index: usize) -> Weight {
        let (Some(rs), Some(state)) = (self.vs.real_servers.get(index), self.reals.get(index))
        else {
            return Weight::ZERO;
        };
        let mut weight = i64::from(rs.weight.get());
        for change in state.weights.iter().flatten() {
            if let WeightChange::Set(w) = change {
                weight = i64::from(*w);
            }
        }
        for change in state.weights.iter().flatten() {
            if let WeightChange::Add(d) = change {
                weight += d;
            }
        }
        Weight::saturating(weight)
    }

    fn live_weight(&self) -> u64 {
        (0..self.reals.len())
            .filter(|&i| self.reals[i].alive)
            .map(|i| u64::from(self.weight(i).get()))
            .sum()
    }

    /// A checker's verdict: real server `real`, its checker `check`.
    pub fn set_check(
        &mut self,
        real: usize,
        check: usize,
        up: bool,
        weight: Option<WeightChange>,
    ) -> Vec<PoolEvent> {
        let mut events = Vec::new();
        let Some(state) = self.reals.get_mut(real) else {
            return events;
        };
        if let (Some(u), Some(w)) = (state.checks_up.get_mut(check), state.weights.get_mut(check)) {
            *u = up;
            *w = weight;
        }
        let alive = state.checks_up.iter().all(|&u| u);
        if alive != state.alive {
            state.alive = alive;
            events.push(if alive {
                PoolEvent::RealUp(real)
            } else {
                PoolEvent::RealDown(real)
            });
        }
        events.extend(self.requorum());
        events
    }

    /// Quorum with hysteresis, from the live weight now.
    fn requorum(&mut self) -> Option<PoolEvent> {
        let live = self.live_weight();
        let quorum = u64::from(self.vs.quorum);
        let hysteresis = u64::from(self.vs.hysteresis);
        if !self.quorum_up && live >= quorum + hysteresis && live > 0 {
            self.quorum_up = true;
            Some(PoolEvent::QuorumUp)
        } else if self.quorum_up && (live == 0 || live < quorum.saturating_sub(hysteresis)) {
            self.quorum_up = false;
            Some(PoolEvent::QuorumDown)
        } else {
            None
        }
    }

    fn dest(rs: &RealServer, weight: Weight) -> DestSettings {
        DestSettings {
            weight: weight.get(),
            forwarding: rs.forwarding,
            upper_threshold: rs.upper_threshold,
            lower_threshold: rs.lower_threshold,
        }
    }

    /// The IPVS services this pool wants, with their destinations.
    pub fn desired(&self) -> Table {
        if self.disabled {
            return Table::new();
        }
        let settings = ServiceSettings::of(&self.vs);
        let sorry_in_use = !self.quorum_up && self.vs.sorry_server.is_some();
        let mut dests = BTreeMap::new();
        for (i, rs) in self.vs.real_servers.iter().enumerate() {
            let weight = if self.reals[i].alive && !sorry_in_use {
                Some(if self.is_drained(i) {
                    Weight::ZERO
                } else {
                    self.weight(i)
                })
            } else if rs.inhibit_on_failure {
                Some(Weight::ZERO)
            } else {
                None
            };
            if let Some(w) = weight {
                dests.insert(rs.addr, Self::dest(rs, w));
            }
        }
        if let Some(sorry) = &self.vs.sorry_server {
            let weight = match (sorry_in_use, sorry.inhibit) {
                (true, _) => Some(1),
                (false, true) => Some(0),
                (false, false) => None,
            };
            if let Some(weight) = weight {
                dests.insert(
                    sorry.addr,
                    DestSettings {
                        weight,
                        forwarding: sorry.forwarding,
                        upper_threshold: 0,
                        lower_threshold: 0,
                    },
                );
            }
        }
        self.vs
            .services
            .iter()
            .map(|key| {
                let dests = dests
                    .iter()
                    .map(|(addr, d)| (service_dest(key, *addr), d.clone()))
                    .collect();
                (
                    *key,
                    Arc::new(ServiceState {
                        settings: settings.clone(),
                        dests,
                    }),
                )
            })
            .collect()
    }
}

/// A real server's address under `key`: port 0 follows the service's port (keepalived's
/// real servers of a group or a port-less real server); a firewall-mark service's real servers
/// have port 0, as keepalived programs them (the packet's own port is kept).
fn service_dest(key: &ServiceKey, addr: SocketAddr) -> SocketAddr {
    match key {
        ServiceKey::Addr { addr: vip, .. } if addr.port() == 0 => {
            SocketAddr::new(addr.ip(), vip.port())
        }
        ServiceKey::Addr { .. } => addr,
        ServiceKey::Fwmark { .. } => SocketAddr::new(addr.ip(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Checker, Forwarding, Protocol, SorryServer};

    fn checker(alpha: bool) -> Checker {
        crate::health::state::tests::checker(0, 1, alpha)
    }

    fn vs(weights: &[u16], quorum: u32, hysteresis: u32) -> VirtualServer {
        let mut vs = VirtualServer::new("203.0.113.1:80".parse().unwrap(), Protocol::Tcp);
        vs.quorum = quorum;
        vs.hysteresis = hysteresis;
        for (i, w) in weights.iter().enumerate() {
            let mut rs = RealServer::new(SocketAddr::from(([192, 0, 2, 10 + i as u8], 80)));
            rs.weight = Weight::new(i64::from(*w)).unwrap();
            rs.checkers.push(checker(false));
            vs.real_servers.push(rs);
        }
        vs
    }

    fn weights(pool: &Pool) -> Vec<(String, u32)> {
        pool.desired()
            .into_values()
            .next()
            .unwrap()
            .dests
            .iter()
            .map(|(a, d)| (a.to_string(), d.weight))
            .collect()
    }

    #[test]
    fn a_disabled_virtual_server_has_no_service_until_enabled() {
        let mut pool = Pool::new(vs(&[1, 2], 1, 0));
        assert!(pool.set_disabled(true));
        assert!(pool.desired().is_empty());
        assert!(!pool.set_disabled(true));
        assert!(pool.set_disabled(false));
        assert_eq!(pool.desired().len(), 1);
    }

    #[test]
    fn a_drained_real_server_stays_in_the_table_at_weight_zero() {
        let mut pool = Pool::new(vs(&[1, 2], 1, 0));
        assert!(pool.set_drained(0, true));
        assert!(!pool.set_drained(0, true), "draining twice changes nothing");
        assert_eq!(
            weights(&pool),
            [("192.0.2.10:80".into(), 0), ("192.0.2.11:80".into(), 2)]
        );
        // Down and drained: it leaves like any dead server.
        pool.set_check(0, 0, false, None);
        assert_eq!(weights(&pool), [("192.0.2.11:80".into(), 2)]);
        pool.set_check(0, 0, true, None);
        assert!(pool.set_drained(0, false));
        assert_eq!(
            weights(&pool),
            [("192.0.2.10:80".into(), 1), ("192.0.2.11:80".into(), 2)]
        );
    }

    #[test]
    fn dead_servers_leave_or_stay_at_weight_zero_when_inhibited() {
        let mut v = vs(&[1, 2], 1, 0);
        v.real_servers[1].inhibit_on_failure = true;
        let mut pool = Pool::new(v);
        assert_eq!(
            weights(&pool),
            [("192.0.2.10:80".into(), 1), ("192.0.2.11:80".into(), 2)]
        );
        assert_eq!(pool.set_check(0, 0, false, None), [PoolEvent::RealDown(0)]);
        assert_eq!(
            pool.set_check(1, 0, false, None),
            [PoolEvent::RealDown(1), PoolEvent::QuorumDown]
        );
        assert_eq!(weights(&pool), [("192.0.2.11:80".into(), 0)]);
        assert_eq!(
            pool.set_check(0, 0, true, None),
            [PoolEvent::RealUp(0), PoolEvent::QuorumUp]
        );
    }

    #[test]
    fn quorum_has_hysteresis() {
        // quorum 4 ± 1: lost below 3, regained at 5.
        let mut pool = Pool::new(vs(&[2, 2, 2], 4, 1));
        assert!(pool.has_quorum());
        assert_eq!(pool.set_check(0, 0, false, None), [PoolEvent::RealDown(0)]);
        assert!(pool.has_quorum(), "4 live is not below 3");
        assert_eq!(
            pool.set_check(1, 0, false, None),
            [PoolEvent::RealDown(1), PoolEvent::QuorumDown]
        );
        assert_eq!(pool.set_check(1, 0, true, None), [PoolEvent::RealUp(1)]);
        assert!(!pool.has_quorum(), "4 live is not 5");
        assert_eq!(
            pool.set_check(0, 0, true, None),
            [PoolEvent::RealUp(0), PoolEvent::QuorumUp]
        );
    }

    #[test]
    fn the_sorry_server_serves_while_quorum_is_lost() {
        let mut v = vs(&[1, 1], 2, 0);
        v.sorry_server = Some(SorryServer {
            addr: "192.0.2.99:80".parse().unwrap(),
            forwarding: Forwarding::Nat,
            inhibit: false,
        });
        let mut pool = Pool::new(v.clone());
        assert_eq!(
            weights(&pool).len(),
            2,
            "no sorry server while quorum holds"
        );
        pool.set_check(0, 0, false, None);
        assert_eq!(
            weights(&pool),
            [("192.0.2.99:80".into(), 1)],
            "the live server steps aside for the sorry server"
        );
        pool.set_check(0, 0, true, None);
        assert_eq!(weights(&pool).len(), 2);
        // sorry_server_inhibit: kept at weight 0 while unused.
        v.sorry_server.as_mut().unwrap().inhibit = true;
        let pool = Pool::new(v);
        assert!(weights(&pool).contains(&("192.0.2.99:80".into(), 0)));
    }

    #[test]
    fn alpha_servers_start_dead_and_dynamic_weights_apply() {
        let mut v = vs(&[3], 1, 0);
        v.real_servers[0].checkers[0].alpha = true;
        v.real_servers[0].checkers.push(checker(false));
        let mut pool = Pool::new(v);
        assert!(!pool.is_alive(0));
        assert!(!pool.has_quorum());
        assert!(weights(&pool).is_empty());
        assert_eq!(
            pool.set_check(0, 0, true, Some(WeightChange::Set(7))),
            [PoolEvent::RealUp(0), PoolEvent::QuorumUp]
        );
        pool.set_check(0, 1, true, Some(WeightChange::Add(-2)));
        assert_eq!(weights(&pool), [("192.0.2.10:80".into(), 5)]);
    }

    #[test]
    fn portless_real_servers_take_each_group_member_s_port() {
        let mut v = vs(&[1], 1, 0);
        v.real_servers[0].addr = "192.0.2.10:0".parse().unwrap();
        v.services = vec![
            ServiceKey::Addr {
                addr: "203.0.113.1:80".parse().unwrap(),
                protocol: Protocol::Tcp,
            },
            ServiceKey::Addr {
                addr: "203.0.113.1:443".parse().unwrap(),
                protocol: Protocol::Tcp,
            },
        ];
        let desired = Pool::new(v).desired();
        let ports: Vec<u16> = desired
            .values()
            .flat_map(|s| s.dests.keys().map(SocketAddr::port))
            .collect();
        assert_eq!(ports, [80, 443]);
    }
}
