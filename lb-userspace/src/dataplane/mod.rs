//! The data planes lbd programs, and where the BPF object comes from.
//!
//! [`xdp`] loads lbd's XDP program with aya, attaches it, fills its VIP map and reads its
//! counters; [`vrrp_watch`] attaches the TC program that records VRRP adverts. They are the only
//! modules that touch BPF. [`BpfObject`] says which object is used:
//! one given with `--bpf-object`, the one embedded at build time (after `cargo xtask build-ebpf`),
//! or none, in which case lbd runs IPVS-only.

pub mod maglev;
pub mod neighbour;
pub mod vip_table;
pub mod vrrp_watch;
pub mod xdp;

use std::path::{Path, PathBuf};

/// The BPF object embedded at build time, if `cargo xtask build-ebpf` had built one.
#[cfg(lbd_bpf_embedded)]
pub fn embedded_object() -> Option<&'static [u8]> {
    Some(aya::include_bytes_aligned!(concat!(
        env!("OUT_DIR"),
        "/lb-ebpf.o"
    )))
}

/// The BPF object embedded at build time, if `cargo xtask build-ebpf` had built one.
#[cfg(not(lbd_bpf_embedded))]
pub fn embedded_object() -> Option<&'static [u8]> {
    None
}

/// Where lbd's BPF object comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BpfObject {
    /// Read from this file at startup.
    File(PathBuf),
    /// Embedded in the binary.
    Embedded,
    /// No object: XDP is unavailable and lbd runs IPVS-only.
    Missing,
}

impl BpfObject {
    /// `path` if given, else the embedded object if there is one.
    pub fn choose(path: Option<&Path>) -> Self {
        match (path, embedded_object()) {
            (Some(p), _) => BpfObject::File(p.to_owned()),
            (None, Some(_)) => BpfObject::Embedded,
            (None, None) => BpfObject::Missing,
        }
    }

    /// The object's bytes; `None` when missing.
    pub fn bytes(&self) -> std::io::Result<Option<std::borrow::Cow<'static, [u8]>>> {
        Ok(match self {
            BpfObject::File(p) => Some(std::borrow::Cow::Owned(std::fs::read(p)?)),
            BpfObject::Embedded => embedded_object().map(std::borrow::Cow::Borrowed),
            BpfObject::Missing => None,
        })
    }

    /// Where it came from, in words.
    pub fn describe(&self) -> String {
        match self {
            BpfObject::File(p) => format!("file {}", p.display()),
            BpfObject::Embedded => "embedded".to_owned(),
            BpfObject::Missing => "none".to_owned(),
        }
    }
}
