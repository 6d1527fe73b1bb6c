//! Deterministic simulation of VRRP routers on a virtual LAN (tests only).
//!
//! Each router is an [`Instance`]; every advert it sends is emitted to bytes with the real
//! codec, "carried" to every other router (minus those a seeded loss drops, or a router that
//! crashed), parsed again and delivered after a fixed propagation delay. A virtual clock jumps
//! from one due time to the next. The trace records every state change with its time.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use super::{
    instance::{Config, Event, Instance},
    wire::{
        AdvertRepr, Auth, Envelope, MULTICAST_V4, MULTICAST_V6, Packet, V3Ipv4Checksum, Version,
    },
};
use crate::time::Instant;

/// Propagation delay on the virtual LAN.
const WIRE_DELAY: Duration = Duration::from_micros(100);

/// A router's configuration for the simulation.
pub(crate) fn config(version: Version, priority: u8, primary: &str, advert_int_cs: u16) -> Config {
    let primary: IpAddr = primary.parse().expect("address");
    let vip: IpAddr = if primary.is_ipv4() {
        "192.0.2.100".parse().expect("vip")
    } else {
        "2001:db8::100".parse().expect("vip")
    };
    Config {
        version,
        vrid: 51,
        priority,
        advert_int_cs,
        addresses: vec![vip],
        primary,
        preempt: true,
        preempt_delay: Duration::ZERO,
        start_active: false,
        auth: Auth::None,
        down_timer_adverts: 3,
        check_addresses: true,
    }
}

/// One line of the trace: when, which router, what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Traced {
    pub(crate) at: Duration,
    pub(crate) router: usize,
    pub(crate) event: Event,
}

struct Router {
    instance: Instance,
    /// A crashed router neither sends nor receives (SIGKILL: no priority-0 advert).
    crashed: bool,
}

/// The virtual LAN.
pub(crate) struct Lan {
    routers: Vec<Router>,
    now: Instant,
    /// Adverts in flight: (arrival, sequence) -> (receiver, sender address, bytes).
    in_flight: BTreeMap<(Instant, u64), (usize, IpAddr, Vec<u8>)>,
    sequence: u64,
    loss_per_mille: u64,
    rng: u64,
    pub(crate) trace: Vec<Traced>,
    pub(crate) delivered: u64,
    pub(crate) lost: u64,
}

impl Lan {
    pub(crate) fn new(configs: Vec<Config>) -> Self {
        Self {
            routers: configs
                .into_iter()
                .map(|c| Router {
                    instance: Instance::new(c),
                    crashed: false,
                })
                .collect(),
            now: Instant::from_nanos(1_000_000_000),
            in_flight: BTreeMap::new(),
            sequence: 0,
            loss_per_mille: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            trace: Vec::new(),
            delivered: 0,
            lost: 0,
        }
    }

    /// Drops each delivery with probability `per_mille` / 1000, from a fixed seed.
    pub(crate) fn with_loss(mut self, per_mille: u64, seed: u64) -> Self {
        self.loss_per_mille = per_mille;
        self.rng = seed | 1;
        self
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Time since the simulation began.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now - Instant::from_nanos(1_000_000_000)
    }

    pub(crate) fn instance(&self, router: usize) -> &Instance {
        &self.routers[router].instance
    }

    pub(crate) fn start(&mut self, router: usize) {
        let now = self.now;
        self.routers[router].crashed = false;
        self.routers[router].instance.startup(now);
        self.flush(router);
    }

    /// A graceful stop: the instance sends its priority-0 advert.
    pub(crate) fn stop(&mut self, router: usize) {
        let now = self.now;
        self.routers[router].instance.shutdown(now);
        self.flush(router);
    }

    /// The router's interface goes down (`true`) or comes back (`false`).
    pub(crate) fn fault(&mut self, router: usize, fault: bool) {
        let now = self.now;
        self.routers[router].instance.set_fault(now, fault);
        self.flush(router);
    }

    /// The router's effective priority changes (a tracked object).
    pub(crate) fn set_priority(&mut self, router: usize, priority: u8) {
        let now = self.now;
        self.routers[router].instance.set_priority(now, priority);
        self.flush(router);
    }

    /// SIGKILL: silence, nothing sent.
    pub(crate) fn crash(&mut self, router: usize) {
        self.routers[router].crashed = true;
    }

    /// The routers that are active now.
    pub(crate) fn active(&self) -> Vec<usize> {
        (0..self.routers.len())
            .filter(|&r| !self.routers[r].crashed && self.routers[r].instance.is_active())
            .collect()
    }

    /// Sends what `router` wants sent and records its events.
    fn flush(&mut self, router: usize) {
        while let Some(event) = self.routers[router].instance.poll_event() {
            self.trace.push(Traced {
                at: self.elapsed(),
                router,
                event,
            });
        }
        while let Some(advert) = self.routers[router].instance.poll_transmit() {
            if self.routers[router].crashed {
                continue;
            }
            let src = self.routers[router].instance.config().primary;
            let dst: IpAddr = if src.is_ipv4() {
                MULTICAST_V4.into()
            } else {
                MULTICAST_V6.into()
            };
            let mut bytes = vec![0u8; advert.buffer_len()];
            advert.emit(
                &mut Packet::new_unchecked(&mut bytes[..]),
                src,
                dst,
                V3Ipv4Checksum::PseudoHeader,
            );
            for to in 0..self.routers.len() {
                if to == router {
                    continue;
                }
                if self.loss_per_mille > 0 && self.random() % 1000 < self.loss_per_mille {
                    self.lost += 1;
                    continue;
                }
                self.sequence += 1;
                self.in_flight.insert(
                    (self.now + WIRE_DELAY, self.sequence),
                    (to, src, bytes.clone()),
                );
            }
        }
    }

    /// Runs until `duration` has passed.
    pub(crate) fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        loop {
            let next_timer = (0..self.routers.len())
                .filter(|&r| !self.routers[r].crashed)
                .filter_map(|r| self.routers[r].instance.poll_timeout().map(|t| (t, r)))
                .min();
            let next_packet = self.in_flight.keys().next().copied();
            let next = match (next_timer, next_packet) {
                (Some((t, _)), Some((p, _))) => t.min(p),
                (Some((t, _)), None) => t,
                (None, Some((p, _))) => p,
                (None, None) => end,
            };
            if next > end {
                self.now = end;
                return;
            }
            self.now = next;
            if next_packet.is_some_and(|(p, _)| p == next) {
                let key = next_packet.expect("checked");
                let (to, src, bytes) = self.in_flight.remove(&key).expect("in flight");
                if self.routers[to].crashed {
                    continue;
                }
                let dst: IpAddr = if src.is_ipv4() {
                    MULTICAST_V4.into()
                } else {
                    MULTICAST_V6.into()
                };
                let envelope = Envelope { src, dst, ttl: 255 };
                let advert = AdvertRepr::parse(
                    &Packet::new_unchecked(&bytes[..]),
                    &envelope,
                    V3Ipv4Checksum::PseudoHeader,
                )
                .expect("the codec parses what it emitted");
                self.delivered += 1;
                let now = self.now;
                self.routers[to].instance.handle_advert(now, src, &advert);
                self.flush(to);
            } else if let Some((_, r)) = next_timer {
                let now = self.now;
                self.routers[r].instance.handle_timeout(now);
                self.flush(r);
            }
        }
    }

    /// The trace's state changes of `router`, as (seconds, event).
    pub(crate) fn changes(&self, router: usize) -> Vec<(Duration, Event)> {
        self.trace
            .iter()
            .filter(|t| t.router == router)
            .map(|t| (t.at, t.event))
            .collect()
    }
}
