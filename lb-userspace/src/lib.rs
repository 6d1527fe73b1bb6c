//! lbd: a load-balancer control plane for Linux directors.
//!
//! # Layout
//! - [`config`]: keepalived.conf and TOML text into a validated [`model::Model`] (pure).
//! - [`model`]: the desired state, with types that make illegal states unrepresentable (pure).
//! - [`control`]: the lbctl <-> lbd protocol (types pure; a small blocking client).
//! - [`dataplane`]: the XDP program (aya), the only module touching BPF.
//! - [`ipvs`]: IPVS over generic netlink (neli): message model (pure) and client.
//! - [`daemon`]: the running daemon: tasks, control socket, shutdown.
//! - [`health`]: health checks of real servers: verdicts and pools (pure), probes and their
//!   tasks.
//! - [`reconcile`]: the reconciler: desired vs actual data-plane state, one trait, backends.
//! - [`vrrp`]: VRRP v2/v3 codec and state machine (pure).
//! - [`time`]: the monotonic [`time::Instant`] pure code is given.
//!
//! Pure modules take text, bytes and values and return values; they never touch sockets, the
//! kernel or the clock.

pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod dumps;
pub mod health;
pub mod ipvs;
pub mod metrics;
pub mod model;
pub mod reconcile;
pub mod reload;
pub mod scripts;
mod sys;
pub mod systemd;
pub mod time;
pub mod vrrp;

// Dependencies of the `lbd` and `lbctl` binaries only: cargo cannot scope a dependency to one
// target of a package, and `unused_crate_dependencies` checks each target.
use anyhow as _;
use clap as _;
use glob as _;
use tracing_subscriber as _;
