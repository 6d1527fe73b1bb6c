//! lbd's XDP program in the kernel: load, attach, the forwarding maps, counters, test runs.
//!
//! With `vrrp_watch`, the only module that touches BPF. [`XdpDataplane`] owns the loaded
//! [`aya::Ebpf`] (programs and statistics); [`XdpDataplane::take_maps`] hands the maps lbd
//! writes (VIPs, real servers, Maglev tables, settings) to their one writer, the XDP backend of
//! the reconciler, as [`XdpMaps`]. The Maglev tables are written through a memory mapping.
//!
//! Hitless restart: with a pin directory ([`default_pin_dir`]), the maps and the XDP link are
//! pinned in bpffs. A later lbd finds them, loads its own program on the same maps and swaps it
//! into the link atomically (`bpf_link_update`): the interface never runs without a program,
//! and connection table, Maglev tables and counters carry over. [`XdpDataplane::release`]
//! detaches and unpins (a plain stop); [`XdpDataplane::keep`] leaves everything in place for
//! the next lbd (`lbd run -I`).

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader, TestRun as _, TestRunOptions,
    maps::{Array, Map, MapData, MapError, PerCpuArray},
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use lb_common::{
    Counter, DEFAULT_RING_SIZE, FLOW_SETS, FlowSet, MAP_COUNTERS, MAP_FLOWS, MAP_REAL_STATS,
    MAP_REALS, MAP_RINGS, MAP_SETTINGS, MAP_VIP_STATS, MAP_VIPS, MAX_VIPS, PROG_XDP,
    PROG_XDP_FLOOR, RealInfo, Settings, VIP_SLOTS, VipInfo, VipKey, VipSlot, VipStats,
};

use super::vip_table;
use crate::model::{Protocol, XdpAttach};

/// What went wrong with the XDP program, naming the operation.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The object could not be parsed or its maps created.
    #[error("loading the BPF object: {0}")]
    Object(#[source] Box<aya::EbpfError>),
    /// A program is missing from the object or has the wrong type.
    #[error("program {name} in the BPF object: {source}")]
    Program {
        /// Program name.
        name: &'static str,
        /// Why.
        #[source]
        source: ProgramError,
    },
    /// The kernel's verifier refused the program, or loading it failed.
    #[error("loading program {name} into the kernel: {source}")]
    Load {
        /// Program name.
        name: &'static str,
        /// Why.
        #[source]
        source: ProgramError,
    },
    /// Attaching failed.
    #[error("attaching {PROG_XDP} to {interface} in {mode} mode: {source}")]
    Attach {
        /// Interface name.
        interface: String,
        /// Attach mode tried.
        mode: &'static str,
        /// Why.
        #[source]
        source: ProgramError,
    },
    /// Attaching the VRRP advert recorder to TC ingress failed.
    #[error(
        "attaching {} to the TC ingress of {interface}: {source}",
        lb_common::PROG_VRRP_TC
    )]
    TcAttach {
        /// Interface name.
        interface: String,
        /// Why.
        #[source]
        source: ProgramError,
    },
    /// A map is missing from the object.
    #[error("map {0} is missing from the BPF object")]
    MissingMap(&'static str),
    /// A map operation failed.
    #[error("{op} on map {map}: {source}")]
    Map {
        /// Operation.
        op: &'static str,
        /// Map name.
        map: &'static str,
        /// Why.
        #[source]
        source: MapError,
    },
    /// A map's type is not the one lbd expects, or it was already taken.
    #[error("map {0} has an unexpected type or was already taken")]
    MapType(&'static str),
    /// Mapping the Maglev tables or the VIP table into memory failed.
    #[error("mmap of map {MAP_RINGS} or {MAP_VIPS}: {0}")]
    Mmap(#[source] std::io::Error),
    /// The VIP table has no slot for a VIP where the program would find it.
    #[error("map {MAP_VIPS}: {0}")]
    VipTable(#[source] vip_table::TableFull),
    /// The capacity asked for is not one lbd can load.
    #[error("XDP capacity: {0}")]
    Capacity(String),
    /// Pinning or adopting pinned objects failed.
    #[error("{op} {}: {message}", path.display())]
    Pin {
        /// What was done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// BPF_PROG_TEST_RUN failed.
    #[error("BPF_PROG_TEST_RUN of {name}: {source}")]
    TestRun {
        /// Program name.
        name: &'static str,
        /// Why.
        #[source]
        source: ProgramError,
    },
}

/// The attach mode the kernel accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    /// Native (driver) XDP.
    Native,
    /// Generic (SKB) XDP.
    Generic,
}

impl AttachedMode {
    /// "native" or "generic".
    pub fn name(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
        }
    }
}

/// One BPF_PROG_TEST_RUN outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunOutcome {
    /// The program's return value (an `xdp_action`).
    pub verdict: u32,
    /// Kernel-measured mean time per repetition.
    pub duration: Duration,
    /// The frame as the program left it.
    pub output: Vec<u8>,
}

/// How much the forwarding maps hold: fixed when the program is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// VIPs (each with its own Maglev table).
    pub vips: u32,
    /// Slots of each VIP's Maglev table: a prime.
    pub ring_size: u32,
}

impl Default for Capacity {
    /// Katran's defaults: 512 VIPs, 65,537 slots each (128 MiB of tables, two 4-byte slots to
    /// an 8-byte array element).
    fn default() -> Self {
        Self {
            vips: MAX_VIPS,
            ring_size: DEFAULT_RING_SIZE,
        }
    }
}

/// The VIP-map key for a virtual service.
pub fn vip_key(ip: IpAddr, port: u16, protocol: Protocol) -> VipKey {
    match ip {
        IpAddr::V4(v4) => VipKey::v4(v4.octets(), port, protocol.number()),
        IpAddr::V6(v6) => VipKey::v6(v6.octets(), port, protocol.number()),
    }
}

/// The maps pinned for a restarted lbd: every one the XDP program forwards and counts with.
const PINNED_MAPS: [&str; 8] = [
    MAP_VIPS,
    MAP_VIP_STATS,
    MAP_COUNTERS,
    MAP_REALS,
    MAP_REAL_STATS,
    MAP_RINGS,
    MAP_FLOWS,
    MAP_SETTINGS,
];
/// The pinned XDP link in the pin directory, named after its attach mode (bpffs holds no
/// plain files to record it in).
fn link_pin(dir: &Path, mode: AttachedMode) -> PathBuf {
    dir.join(format!("link_{}", mode.name()))
}

/// Where lbd pins the XDP program's link and maps for `interface`: under bpffs, per network
/// namespace (its inode) and interface, so lbds in different namespaces never meet.
pub fn default_pin_dir(interface: &str) -> PathBuf {
    use std::os::unix::fs::MetadataExt as _;
    let netns = std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino());
    PathBuf::from(format!("/sys/fs/bpf/lbd/netns-{netns}/{interface}"))
}

/// Mounts bpffs at /sys/fs/bpf if it is not (systemd mounts it; a bare system may not) when
/// `dir` is under it, and creates `dir`.
fn ensure_bpffs(dir: &Path) -> Result<(), XdpError> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let pin = |op, message: String| XdpError::Pin {
        op,
        path: dir.to_owned(),
        message,
    };
    let root = Path::new("/sys/fs/bpf");
    let is_bpffs =
        nix::sys::statfs::statfs(root).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC);
    if !is_bpffs && dir.starts_with(root) {
        nix::mount::mount(
            Some("bpf"),
            root,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| pin("mounting bpffs at /sys/fs/bpf for", e.to_string()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| pin("creating", e.to_string()))
}

/// lbd's XDP program, loaded into the kernel, and its statistics maps.
#[derive(Debug)]
pub struct XdpDataplane {
    ebpf: Ebpf,
    attached: Option<(String, AttachedMode, Attachment)>,
    capacity: Capacity,
    pin_dir: Option<PathBuf>,
}

/// How the program is attached.
#[derive(Debug)]
enum Attachment {
    /// A link owned by the program: detached when lbd drops it.
    Owned(XdpLinkId),
    /// A link pinned in bpffs: it outlives lbd until unpinned.
    Pinned,
}

impl XdpDataplane {
    /// Parses `object`, creates its maps sized for `capacity` and loads both programs (the
    /// verifier runs here). Nothing is pinned.
    pub fn load(object: &[u8], capacity: Capacity) -> Result<Self, XdpError> {
        Self::load_pinned(object, capacity, None)
    }

    /// As [`XdpDataplane::load`], with the maps pinned in `pin_dir`: maps an earlier lbd
    /// pinned there are reused (unless their capacity differs: then they are replaced).
    pub fn load_pinned(
        object: &[u8],
        capacity: Capacity,
        pin_dir: Option<&Path>,
    ) -> Result<Self, XdpError> {
        if capacity.vips == 0 || capacity.vips > MAX_VIPS {
            return Err(XdpError::Capacity(format!(
                "{} VIPs asked for, 1 to {MAX_VIPS} possible",
                capacity.vips
            )));
        }
        if !super::maglev::is_prime(capacity.ring_size) {
            return Err(XdpError::Capacity(format!(
                "the Maglev table size {} is not a prime",
                capacity.ring_size
            )));
        }
        let slots = capacity
            .vips
            .checked_mul(capacity.ring_size)
            .ok_or_else(|| XdpError::Capacity("VIPs x table size overflows".to_owned()))?;
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(MAP_VIP_STATS, capacity.vips)
            .map_max_entries(MAP_RINGS, slots.div_ceil(2));
        let pins: Vec<(&'static str, PathBuf)> = match pin_dir {
            Some(dir) => {
                ensure_bpffs(dir)?;
                let rings = dir.join(MAP_RINGS);
                let has = |name: &str, entries: u32, value_size: u32| {
                    MapData::from_pin(dir.join(name))
                        .and_then(|m| m.info())
                        .is_ok_and(|info| {
                            info.max_entries() == entries && info.value_size() == value_size
                        })
                };
                // The capacity, and the layout (an older lbd's VIP and flow maps were hashes).
                let fits = has(MAP_RINGS, slots.div_ceil(2), 8)
                    && has(MAP_VIPS, VIP_SLOTS, size_of::<VipSlot>() as u32)
                    && has(MAP_FLOWS, FLOW_SETS, size_of::<FlowSet>() as u32);
                if rings.exists() && !fits {
                    tracing::warn!(dir = %dir.display(), "the pinned XDP maps have another capacity or layout: replacing them (established flows may move)");
                    for name in PINNED_MAPS {
                        std::fs::remove_file(dir.join(name)).ok();
                    }
                }
                PINNED_MAPS.iter().map(|n| (*n, dir.join(n))).collect()
            }
            None => Vec::new(),
        };
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .load(object)
            .map_err(|e| XdpError::Object(Box::new(e)))?;
        for name in [PROG_XDP, PROG_XDP_FLOOR] {
            Self::program_mut(&mut ebpf, name)?
                .load()
                .map_err(|source| XdpError::Load { name, source })?;
        }
        Ok(Self {
            ebpf,
            attached: None,
            capacity,
            pin_dir: pin_dir.map(Path::to_owned),
        })
    }

    /// Leaves the program attached and everything pinned, for the next lbd.
    pub fn keep(self) {
        if let Some(dir) = &self.pin_dir {
            tracing::info!(dir = %dir.display(), "XDP program left attached and pinned for the next lbd");
        }
    }

    /// Detaches the program and removes the pins.
    pub fn release(self) {
        if let Some(dir) = &self.pin_dir {
            // The pin is the link's last reference once lbd's descriptors close.
            for mode in [AttachedMode::Native, AttachedMode::Generic] {
                std::fs::remove_file(link_pin(dir, mode)).ok();
            }
            for name in PINNED_MAPS {
                std::fs::remove_file(dir.join(name)).ok();
            }
            std::fs::remove_dir(dir).ok();
        }
        drop(self);
    }

    /// Hands over the maps lbd writes; `None` the second time.
    pub fn take_maps(&mut self) -> Result<XdpMaps, XdpError> {
        let mut take = |name: &'static str| -> Result<MapData, XdpError> {
            match self.ebpf.take_map(name) {
                Some(Map::HashMap(m) | Map::Array(m)) => Ok(m),
                _ => Err(XdpError::MapType(name)),
            }
        };
        let open = |name: &'static str, source: MapError| XdpError::Map {
            op: "open",
            map: name,
            source,
        };
        let vips = crate::sys::MappedArray::new(take(MAP_VIPS)?, vip_table::TABLE_WORDS)
            .map_err(XdpError::Mmap)?;
        let reals =
            Array::try_from(Map::Array(take(MAP_REALS)?)).map_err(|e| open(MAP_REALS, e))?;
        let settings =
            Array::try_from(Map::Array(take(MAP_SETTINGS)?)).map_err(|e| open(MAP_SETTINGS, e))?;
        let slots = (self.capacity.vips as usize) * (self.capacity.ring_size as usize);
        let rings = crate::sys::MappedArray::new(take(MAP_RINGS)?, slots.div_ceil(2))
            .map_err(XdpError::Mmap)?;
        Ok(XdpMaps {
            vips,
            reals,
            settings,
            rings,
            capacity: self.capacity,
        })
    }

    fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, XdpError> {
        let program = ebpf.program_mut(name).ok_or(XdpError::Program {
            name,
            source: ProgramError::NotLoaded,
        })?;
        program
            .try_into()
            .map_err(|source| XdpError::Program { name, source })
    }

    fn program(&self, name: &'static str) -> Result<&Xdp, XdpError> {
        let program = self.ebpf.program(name).ok_or(XdpError::Program {
            name,
            source: ProgramError::NotLoaded,
        })?;
        program
            .try_into()
            .map_err(|source| XdpError::Program { name, source })
    }

    /// Attaches the program to `interface`. `Auto` tries native mode, then generic. With a pin
    /// directory, a link an earlier lbd pinned there gets this program atomically (the
    /// interface is never without one); otherwise the new link is pinned.
    pub fn attach(&mut self, interface: &str, attach: XdpAttach) -> Result<AttachedMode, XdpError> {
        if let Some(dir) = self.pin_dir.clone() {
            for mode in [AttachedMode::Native, AttachedMode::Generic] {
                let pinned = link_pin(&dir, mode);
                if pinned.exists() {
                    return self.adopt_link(interface, mode, &pinned);
                }
            }
            let mode = self.attach_new(interface, attach)?;
            self.pin_link(&dir, mode)?;
            return Ok(mode);
        }
        self.attach_new(interface, attach)
    }

    fn adopt_link(
        &mut self,
        interface: &str,
        mode: AttachedMode,
        link_pin: &Path,
    ) -> Result<AttachedMode, XdpError> {
        let pin = |op, e: &dyn std::fmt::Display| XdpError::Pin {
            op,
            path: link_pin.to_owned(),
            message: e.to_string(),
        };
        let pinned = PinnedLink::from_pin(link_pin).map_err(|e| pin("opening", &e))?;
        let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| pin("opening", &e))?;
        let program = Self::program_mut(&mut self.ebpf, PROG_XDP)?;
        let id = program
            .attach_to_link(link)
            .map_err(|e| pin("replacing the program of", &e))?;
        // The program owns the link now; the pin keeps it alive when lbd exits.
        drop(program.take_link(id));
        tracing::info!(
            interface,
            mode = mode.name(),
            "XDP link adopted: the new program replaced the old one in place"
        );
        self.attached = Some((interface.to_owned(), mode, Attachment::Pinned));
        Ok(mode)
    }

    fn pin_link(&mut self, dir: &Path, mode: AttachedMode) -> Result<(), XdpError> {
        let link_pin = link_pin(dir, mode);
        let pin = |op, e: &dyn std::fmt::Display| XdpError::Pin {
            op,
            path: link_pin.clone(),
            message: e.to_string(),
        };
        let Some((interface, _, Attachment::Owned(id))) = self.attached.take() else {
            return Ok(());
        };
        let program = Self::program_mut(&mut self.ebpf, PROG_XDP)?;
        let link = program
            .take_link(id)
            .map_err(|e| pin("taking the link", &e))?;
        match FdLink::try_from(link) {
            Ok(fd_link) => {
                fd_link.pin(&link_pin).map_err(|e| pin("pinning", &e))?;
                self.attached = Some((interface, mode, Attachment::Pinned));
            }
            Err(e) => {
                // A kernel without XDP links (netlink attach): nothing to pin; the program
                // stays attached as it is, and a restart has a gap.
                tracing::warn!(error = %e, "the XDP attachment is not a link: it cannot be pinned");
                self.attached = Some((interface, mode, Attachment::Pinned));
            }
        }
        Ok(())
    }

    fn attach_new(&mut self, interface: &str, attach: XdpAttach) -> Result<AttachedMode, XdpError> {
        let tries: &[(XdpMode, AttachedMode)] = match attach {
            XdpAttach::Auto => &[
                (XdpMode::Driver, AttachedMode::Native),
                (XdpMode::Skb, AttachedMode::Generic),
            ],
            XdpAttach::Native => &[(XdpMode::Driver, AttachedMode::Native)],
            XdpAttach::Generic => &[(XdpMode::Skb, AttachedMode::Generic)],
        };
        let program = Self::program_mut(&mut self.ebpf, PROG_XDP)?;
        for (n, &(mode, attached)) in tries.iter().enumerate() {
            match program.attach(interface, mode) {
                Ok(link) => {
                    self.attached = Some((interface.to_owned(), attached, Attachment::Owned(link)));
                    return Ok(attached);
                }
                // The last mode's error is the one to report.
                Err(source) if n + 1 == tries.len() => {
                    return Err(XdpError::Attach {
                        interface: interface.to_owned(),
                        mode: attached.name(),
                        source,
                    });
                }
                Err(_) => {}
            }
        }
        unreachable!("every attach mode list is non-empty")
    }

    /// The interface and mode the program is attached in, if it is.
    pub fn attached(&self) -> Option<(&str, AttachedMode)> {
        self.attached.as_ref().map(|(i, m, _)| (i.as_str(), *m))
    }

    /// Packets and bytes counted for VIP slot `index`, summed over CPUs.
    pub fn vip_stats(&self, index: u32) -> Result<VipStats, XdpError> {
        self.traffic(MAP_VIP_STATS, index)
    }

    /// Packets and bytes forwarded to real server `id`, summed over CPUs.
    pub fn real_stats(&self, id: u32) -> Result<VipStats, XdpError> {
        self.traffic(MAP_REAL_STATS, id)
    }

    fn traffic(&self, name: &'static str, index: u32) -> Result<VipStats, XdpError> {
        let map = self.ebpf.map(name).ok_or(XdpError::MissingMap(name))?;
        let array: PerCpuArray<_, VipStats> =
            PerCpuArray::try_from(map).map_err(|source| XdpError::Map {
                op: "open",
                map: name,
                source,
            })?;
        let values = array.get(&index, 0).map_err(|source| XdpError::Map {
            op: "lookup",
            map: name,
            source,
        })?;
        Ok(values.iter().fold(VipStats::default(), |sum, v| VipStats {
            packets: sum.packets + v.packets,
            bytes: sum.bytes + v.bytes,
        }))
    }

    /// Every packet counter, summed over CPUs (`Seen` as the sum of the outcomes).
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>, XdpError> {
        let map = self
            .ebpf
            .map(MAP_COUNTERS)
            .ok_or(XdpError::MissingMap(MAP_COUNTERS))?;
        let array: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|source| XdpError::Map {
                op: "open",
                map: MAP_COUNTERS,
                source,
            })?;
        Counter::ALL
            .iter()
            .map(|&c| {
                let values = array.get(&(c as u32), 0).map_err(|source| XdpError::Map {
                    op: "lookup",
                    map: MAP_COUNTERS,
                    source,
                })?;
                Ok((c, values.iter().sum()))
            })
            .collect::<Result<Vec<(Counter, u64)>, XdpError>>()
            .map(|mut counts| {
                // The program does not count `Seen`: it is the sum of the outcomes ...
                let seen = counts
                    .iter()
                    .filter(|(c, _)| c.is_outcome())
                    .map(|(_, n)| n)
                    .sum();
                // Nor `FlowHit`: every forwarded packet started a flow or found one.
                let count = |which: Counter| {
                    counts
                        .iter()
                        .find(|(c, _)| *c == which)
                        .map_or(0, |(_, n)| *n)
                };
                let hits = (count(Counter::ForwardedDr) + count(Counter::ForwardedEncap))
                    .saturating_sub(count(Counter::FlowNew));
                for (counter, n) in &mut counts {
                    match counter {
                        Counter::Seen => *n = seen,
                        Counter::FlowHit => *n = hits,
                        _ => {}
                    }
                }
                counts
            })
    }

    /// Runs `program` (`lb_common::PROG_XDP` or `PROG_XDP_FLOOR`) on `packet` `repeat` times
    /// through BPF_PROG_TEST_RUN, as if it arrived on interface `ingress_ifindex` (0: none).
    pub fn test_run(
        &self,
        name: &'static str,
        packet: &[u8],
        ingress_ifindex: u32,
        repeat: u32,
    ) -> Result<TestRunOutcome, XdpError> {
        // Room for the largest growth the program makes (an outer IPv6 header).
        let mut output = vec![0u8; packet.len() + 256];
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex; the kernel takes the interface from it.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(
            &u32::try_from(packet.len())
                .unwrap_or(u32::MAX)
                .to_ne_bytes(),
        );
        ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
        let result = self
            .program(name)?
            .test_run(TestRunOptions {
                data_in: Some(packet),
                data_out: Some(&mut output),
                ctx_in: (ingress_ifindex != 0).then_some(&ctx[..]),
                repeat,
                ..TestRunOptions::default()
            })
            .map_err(|source| XdpError::TestRun { name, source })?;
        output.truncate(result.data_size_out as usize);
        Ok(TestRunOutcome {
            verdict: result.return_value,
            duration: result.duration,
            output,
        })
    }
}

/// The maps lbd writes, held by their one writer (the reconciler's XDP backend).
pub struct XdpMaps {
    /// The VIP table, memory-mapped ([`vip_table`]).
    vips: crate::sys::MappedArray,
    reals: Array<MapData, RealInfo>,
    settings: Array<MapData, Settings>,
    rings: crate::sys::MappedArray,
    capacity: Capacity,
}

impl std::fmt::Debug for XdpMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpMaps")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl XdpMaps {
    /// The capacity the maps were created with.
    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// Writes the settings entry (`ring_size` is always the capacity's).
    pub fn set_settings(&mut self, settings: &Settings) -> Result<(), XdpError> {
        let settings = Settings {
            ring_size: self.capacity.ring_size,
            ..*settings
        };
        self.settings
            .set(0, settings, 0)
            .map_err(|source| XdpError::Map {
                op: "update",
                map: MAP_SETTINGS,
                source,
            })
    }

    /// Adds or changes a VIP.
    pub fn set_vip(&mut self, key: &VipKey, info: VipInfo) -> Result<(), XdpError> {
        vip_table::insert(self.vips.as_mut_slice(), key, info).map_err(XdpError::VipTable)
    }

    /// Removes a VIP (absent already is fine).
    pub fn remove_vip(&mut self, key: &VipKey) -> Result<(), XdpError> {
        vip_table::remove(self.vips.as_mut_slice(), key);
        Ok(())
    }

    /// Every VIP in the table.
    pub fn vips(&self) -> Vec<(VipKey, VipInfo)> {
        vip_table::entries(self.vips.as_slice())
    }

    /// Writes real server `id` (`family` 0 frees the id).
    pub fn set_real(&mut self, id: u32, real: &RealInfo) -> Result<(), XdpError> {
        self.reals.set(id, real, 0).map_err(|source| XdpError::Map {
            op: "update",
            map: MAP_REALS,
            source,
        })
    }

    /// Every real-server id in use (family set), with its entry: what an earlier lbd left.
    pub fn reals(&self) -> Result<Vec<(u32, RealInfo)>, XdpError> {
        self.reals
            .iter()
            .enumerate()
            .filter_map(|(id, r)| match r {
                Ok(r) if r.family == 0 => None,
                Ok(r) => Some(Ok((u32::try_from(id).unwrap_or(u32::MAX), r))),
                Err(source) => Some(Err(XdpError::Map {
                    op: "iterate",
                    map: MAP_REALS,
                    source,
                })),
            })
            .collect()
    }

    /// A second handle on the Maglev tables' map for `bpf_map_update_elem`, one system call an
    /// element (two slots): the alternative to the memory mapping, kept to measure it against
    /// (`bench xdp`).
    pub fn rings_by_syscall(&self) -> Result<Array<MapData, u64>, XdpError> {
        use std::os::fd::AsFd as _;
        let fd = self
            .rings
            .map()
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(XdpError::Mmap)?;
        let map = MapData::from_fd(fd).map_err(|source| XdpError::Map {
            op: "opening",
            map: MAP_RINGS,
            source,
        })?;
        Array::try_from(Map::Array(map)).map_err(|source| XdpError::Map {
            op: "opening",
            map: MAP_RINGS,
            source,
        })
    }

    /// The Maglev table of VIP slot `index`, to write.
    pub fn ring_mut(&mut self, index: u32) -> &mut [u32] {
        let size = self.capacity.ring_size as usize;
        let start = (index as usize) * size;
        self.rings
            .as_mut_u32()
            .get_mut(start..start + size)
            .unwrap_or(&mut [])
    }
}
