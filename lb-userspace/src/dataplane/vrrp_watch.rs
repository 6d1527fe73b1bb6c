//! The in-kernel record of VRRP adverts: `lb_vrrp_tc` on an interface's TC ingress, and its map
//! `LB_VRRP_SEEN` (count, time, sender, priority and interval of each virtual router's latest
//! advert, stamped by the kernel as it arrives). The VRRP driver reads it so that its decisions
//! rest on when adverts arrived, not on when it happened to be scheduled.
//!
//! A TC program rather than XDP: it works on any interface, next to lbd's XDP fast path or
//! without it, and sees the frame before a macvlan (VMAC) takes it. Dropping the watch detaches
//! the program.
//!
//! For each virtual router a backup of lbd follows ([`VrrpWatch::watch`]), the program also
//! re-arms a kernel timer (`bpf_timer`) of the backup's Master_Down_Interval on every advert
//! it would follow; when the timer fires, the router's key goes into a ring buffer
//! ([`VrrpWatch::take_events`]), which wakes the driver at once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::{
    Ebpf,
    maps::{HashMap, Map, MapData, RingBuf},
    programs::{SchedClassifier, TcAttachType, tc, tc::SchedClassifierLink},
};
use lb_common::{
    MAP_VRRP_EVENTS, MAP_VRRP_SEEN, MAP_VRRP_TIMERS, MAP_VRRP_WATCHED, PROG_VRRP_TC, VrrpKey,
    VrrpSeen, VrrpWatched,
};

use super::xdp::XdpError;

/// What the kernel saw of one virtual router's adverts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Adverts counted.
    pub count: u64,
    /// When the latest arrived (CLOCK_MONOTONIC).
    pub last: crate::time::Instant,
    /// Its sender.
    pub sender: IpAddr,
    /// Its priority.
    pub priority: u8,
    /// Its interval in centiseconds.
    pub interval_cs: u16,
}

/// `lb_vrrp_tc` attached to one interface.
///
/// Once attached, only what the driver uses is kept: the three maps and the link. The parsed
/// object (its programs' instructions, BTF, relocations: several MB) is dropped; the kernel
/// keeps the program alive through the attachment.
pub struct VrrpWatch {
    /// The loaded object, kept only when loaded for BPF_PROG_TEST_RUN.
    ebpf: Option<Ebpf>,
    seen: HashMap<MapData, VrrpKey, VrrpSeen>,
    watched: HashMap<MapData, VrrpKey, VrrpWatched>,
    events: Option<RingBuf<MapData>>,
    /// The map of master-down timers, only held: the kernel cancels a map's `bpf_timer`s when
    /// the last user-space reference to it goes.
    _timers: Map,
    /// The attachment: dropping it detaches the program.
    link: Option<SchedClassifierLink>,
    ifindex: u32,
}

impl std::fmt::Debug for VrrpWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VrrpWatch")
            .field("ifindex", &self.ifindex)
            .field("attached", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

impl VrrpWatch {
    /// Loads `object`'s TC program (the verifier runs here) without attaching it: for
    /// BPF_PROG_TEST_RUN.
    pub fn load(object: &[u8]) -> Result<Self, XdpError> {
        // The object's forwarding maps are created with it but never used here: the smallest
        // sizes (the default tables and connection table are hundreds of MB).
        let mut loader = aya::EbpfLoader::new();
        for name in [
            lb_common::MAP_VIPS,
            lb_common::MAP_VIP_STATS,
            lb_common::MAP_REALS,
            lb_common::MAP_REAL_STATS,
            lb_common::MAP_RINGS,
            lb_common::MAP_FLOWS,
        ] {
            loader.map_max_entries(name, 1);
        }
        let mut ebpf = loader
            .load(object)
            .map_err(|e| XdpError::Object(Box::new(e)))?;
        let name = PROG_VRRP_TC;
        Self::program_mut(&mut ebpf)?
            .load()
            .map_err(|source| XdpError::Load { name, source })?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(XdpError::MissingMap(name));
        let open = |name: &'static str| {
            move |source| XdpError::Map {
                op: "opening",
                map: name,
                source,
            }
        };
        let seen = HashMap::try_from(take(MAP_VRRP_SEEN)?).map_err(open(MAP_VRRP_SEEN))?;
        let watched = HashMap::try_from(take(MAP_VRRP_WATCHED)?).map_err(open(MAP_VRRP_WATCHED))?;
        let events = take(MAP_VRRP_EVENTS)
            .ok()
            .and_then(|m: Map| RingBuf::try_from(m).ok());
        let timers = take(MAP_VRRP_TIMERS)?;
        Ok(Self {
            ebpf: Some(ebpf),
            seen,
            watched,
            events,
            _timers: timers,
            link: None,
            ifindex: 0,
        })
    }

    fn program_mut(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, XdpError> {
        let name = PROG_VRRP_TC;
        ebpf.program_mut(name)
            .ok_or(XdpError::Program {
                name,
                source: aya::programs::ProgramError::NotLoaded,
            })?
            .try_into()
            .map_err(|source| XdpError::Program { name, source })
    }

    /// Loads `object`'s TC program and attaches it to the ingress of `interface` (index
    /// `ifindex`), adding the clsact qdisc if the interface has none.
    pub fn attach(object: &[u8], interface: &str, ifindex: u32) -> Result<Self, XdpError> {
        let mut watch = Self::load(object)?;
        let mut ebpf = watch
            .ebpf
            .take()
            .ok_or(XdpError::MissingMap(PROG_VRRP_TC))?;
        // Already there (another program, or an earlier run) is fine.
        let _existing = tc::qdisc_add_clsact(interface);
        let program = Self::program_mut(&mut ebpf)?;
        let attach_error = |source| XdpError::TcAttach {
            interface: interface.to_owned(),
            source,
        };
        let id = program
            .attach(interface, TcAttachType::Ingress)
            .map_err(attach_error)?;
        watch.link = Some(program.take_link(id).map_err(attach_error)?);
        watch.ifindex = ifindex;
        // The parsed object goes; its memory goes back to the system.
        drop(ebpf);
        crate::sys::release_free_memory();
        Ok(watch)
    }

    /// Runs the program once on `frame` with BPF_PROG_TEST_RUN; returns its verdict.
    pub fn test_run(&mut self, frame: &[u8]) -> Result<i32, XdpError> {
        use aya::programs::{TestRun as _, TestRunOptions};
        let name = PROG_VRRP_TC;
        let ebpf = self
            .ebpf
            .as_mut()
            .ok_or(XdpError::MissingMap(PROG_VRRP_TC))?;
        let result = Self::program_mut(ebpf)?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat: 1,
                ..TestRunOptions::default()
            })
            .map_err(|source| XdpError::TestRun { name, source })?;
        Ok(i32::try_from(result.return_value).unwrap_or(i32::MIN))
    }

    /// Every record in the map, whatever the interface.
    pub fn records(&self) -> Vec<(VrrpKey, VrrpSeen)> {
        self.seen.iter().filter_map(Result::ok).collect()
    }

    fn key(&self, vrid: u8, v6: bool) -> VrrpKey {
        VrrpKey {
            ifindex: self.ifindex,
            vrid,
            family: if v6 { 6 } else { 4 },
            _pad: [0; 2],
        }
    }

    /// Arms the kernel's master-down timer for `vrid`: adverts of at least `min_priority`
    /// re-arm it to `down` from their arrival. `None` stops watching.
    pub fn watch(
        &mut self,
        vrid: u8,
        v6: bool,
        watch: Option<(std::time::Duration, u8)>,
    ) -> Result<(), XdpError> {
        let key = self.key(vrid, v6);
        let map = &mut self.watched;
        let result = match watch {
            Some((down, min_priority)) => map.insert(
                key,
                VrrpWatched {
                    down_ns: u64::try_from(down.as_nanos()).unwrap_or(u64::MAX),
                    min_priority,
                    _pad: [0; 7],
                },
                0,
            ),
            // Not there is fine.
            None => map.remove(&key).or(Ok(())),
        };
        result.map_err(|source| XdpError::Map {
            op: "updating",
            map: MAP_VRRP_WATCHED,
            source,
        })
    }

    /// The ring buffer of master-down events (each a [`VrrpKey`]); once.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }

    /// What the kernel saw of virtual router `vrid` (IPv6 when `v6`) on the interface.
    pub fn seen(&self, vrid: u8, v6: bool) -> Option<Seen> {
        let map = &self.seen;
        let key = VrrpKey {
            ifindex: self.ifindex,
            vrid,
            family: if v6 { 6 } else { 4 },
            _pad: [0; 2],
        };
        let seen = map.get(&key, 0).ok()?;
        let sender = if v6 {
            IpAddr::V6(Ipv6Addr::from(seen.sender))
        } else {
            let [.., a, b, c, d] = seen.sender;
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        };
        Some(Seen {
            count: seen.count,
            last: crate::time::Instant::from_nanos(seen.last_ns),
            sender,
            priority: seen.priority,
            interval_cs: seen.interval_cs,
        })
    }
}
