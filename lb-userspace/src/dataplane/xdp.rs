//! lbd's XDP program in the kernel: load, attach, VIP map, counters, test runs.
//!
//! The only module that touches BPF. It owns the loaded [`aya::Ebpf`]; dropping an
//! [`XdpDataplane`] detaches the program (hitless restart with pinned programs comes with the
//! XDP fast-path issue).

use std::{net::IpAddr, time::Duration};

use aya::{
    Ebpf, TestRun as _, TestRunOptions,
    maps::{HashMap, MapError, PerCpuArray},
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};
use lb_common::{
    Counter, MAP_COUNTERS, MAP_VIP_STATS, MAP_VIPS, MAX_VIPS, PROG_XDP, PROG_XDP_FLOOR, VipInfo,
    VipKey, VipStats,
};

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
    /// More VIPs than the map holds.
    #[error("{count} VIPs configured, the XDP VIP map holds {MAX_VIPS}")]
    TooManyVips {
        /// How many were asked for.
        count: usize,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestRunOutcome {
    /// The program's return value (an `xdp_action`).
    pub verdict: u32,
    /// Kernel-measured mean time per repetition.
    pub duration: Duration,
}

/// The VIP-map key for a virtual service.
pub fn vip_key(ip: IpAddr, port: u16, protocol: Protocol) -> VipKey {
    match ip {
        IpAddr::V4(v4) => VipKey::v4(v4.octets(), port, protocol.number()),
        IpAddr::V6(v6) => VipKey::v6(v6.octets(), port, protocol.number()),
    }
}

/// lbd's XDP program, loaded into the kernel, and its maps.
#[derive(Debug)]
pub struct XdpDataplane {
    ebpf: Ebpf,
    attached: Option<(String, AttachedMode, XdpLinkId)>,
    vips: Vec<VipKey>,
}

impl XdpDataplane {
    /// Parses `object`, creates its maps and loads both programs (the verifier runs here).
    pub fn load(object: &[u8]) -> Result<Self, XdpError> {
        let mut ebpf = Ebpf::load(object).map_err(|e| XdpError::Object(Box::new(e)))?;
        for name in [PROG_XDP, PROG_XDP_FLOOR] {
            Self::program_mut(&mut ebpf, name)?
                .load()
                .map_err(|source| XdpError::Load { name, source })?;
        }
        Ok(Self {
            ebpf,
            attached: None,
            vips: Vec::new(),
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

    /// Attaches the counting program to `interface`. `Auto` tries native mode, then generic.
    pub fn attach(&mut self, interface: &str, attach: XdpAttach) -> Result<AttachedMode, XdpError> {
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
                    self.attached = Some((interface.to_owned(), attached, link));
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

    /// Makes the VIP map hold exactly `vips`; VIP `i` counts into slot `i`.
    pub fn set_vips(&mut self, vips: &[VipKey]) -> Result<(), XdpError> {
        if vips.len() > MAX_VIPS as usize {
            return Err(XdpError::TooManyVips { count: vips.len() });
        }
        let map = self
            .ebpf
            .map_mut(MAP_VIPS)
            .ok_or(XdpError::MissingMap(MAP_VIPS))?;
        let mut map: HashMap<_, VipKey, VipInfo> =
            HashMap::try_from(map).map_err(|source| XdpError::Map {
                op: "open",
                map: MAP_VIPS,
                source,
            })?;
        for old in self.vips.iter().filter(|k| !vips.contains(k)) {
            map.remove(old).map_err(|source| XdpError::Map {
                op: "remove",
                map: MAP_VIPS,
                source,
            })?;
        }
        for (index, key) in vips.iter().enumerate() {
            let info = VipInfo {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                flags: 0,
            };
            map.insert(key, info, 0).map_err(|source| XdpError::Map {
                op: "insert",
                map: MAP_VIPS,
                source,
            })?;
        }
        self.vips = vips.to_vec();
        Ok(())
    }

    /// Packets and bytes counted for VIP slot `index`, summed over CPUs.
    pub fn vip_stats(&self, index: u32) -> Result<VipStats, XdpError> {
        let map = self
            .ebpf
            .map(MAP_VIP_STATS)
            .ok_or(XdpError::MissingMap(MAP_VIP_STATS))?;
        let array: PerCpuArray<_, VipStats> =
            PerCpuArray::try_from(map).map_err(|source| XdpError::Map {
                op: "open",
                map: MAP_VIP_STATS,
                source,
            })?;
        let values = array.get(&index, 0).map_err(|source| XdpError::Map {
            op: "lookup",
            map: MAP_VIP_STATS,
            source,
        })?;
        Ok(values.iter().fold(VipStats::default(), |sum, v| VipStats {
            packets: sum.packets + v.packets,
            bytes: sum.bytes + v.bytes,
        }))
    }

    /// Every packet counter, summed over CPUs.
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
            .collect()
    }

    /// Runs `program` (`lb_common::PROG_XDP` or `PROG_XDP_FLOOR`) on `packet` `repeat` times
    /// through BPF_PROG_TEST_RUN.
    pub fn test_run(
        &self,
        name: &'static str,
        packet: &[u8],
        repeat: u32,
    ) -> Result<TestRunOutcome, XdpError> {
        let result = self
            .program(name)?
            .test_run(TestRunOptions {
                data_in: Some(packet),
                repeat,
                ..TestRunOptions::default()
            })
            .map_err(|source| XdpError::TestRun { name, source })?;
        Ok(TestRunOutcome {
            verdict: result.return_value,
            duration: result.duration,
        })
    }
}
