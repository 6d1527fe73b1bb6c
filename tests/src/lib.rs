//! The test rigs of lbd: a namespace lab and packet builders.
//!
//! # Layout
//! - [`lab`]: namespaces, veth pairs and processes owned by a guard that removes them on drop
//!   (also on panic); documentation addresses only; no route off the machine.
//! - [`packet`]: Ethernet/IPv4/IPv6/TCP/UDP frames for BPF_PROG_TEST_RUN fixtures.
//! - [`sys`]: the one place that calls setns(2).
//! - [`vrrp`]: lbd and keepalived as VRRP routers on a bridged LAN.
//!
//! The binaries `lb-demo` and `lb-bench` (run by `cargo xtask demo` / `bench`) use the same rigs.
#![expect(
    unused_crate_dependencies,
    reason = "each target of lb-tests uses part of the package's dependencies; cargo cannot scope them"
)]

pub mod lab;
pub mod packet;
mod sys;
pub mod vrrp;

use std::path::PathBuf;

/// A workspace binary (`lbd`, `lbctl`) next to the running test or tool.
///
/// `cargo xtask test` builds them before the privileged tier; a missing one is a test failure
/// that says how to build it.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> for tests, target/<profile>/<bin> for binaries.
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p lb-userspace --bins` (cargo xtask test does)",
        path.display()
    );
    path
}

/// The desired table of `service` in a status (`desired_services`): (real server, weight).
pub fn desired(status: &serde_json::Value, service: &str) -> Vec<(String, u64)> {
    status["desired_services"]
        .as_array()
        .expect("desired_services")
        .iter()
        .filter(|s| s["service"] == service)
        .flat_map(|s| s["real_servers"].as_array().expect("reals").clone())
        .map(|d| {
            (
                d["address"].as_str().expect("address").to_owned(),
                d["weight"].as_u64().expect("weight"),
            )
        })
        .collect()
}

/// `lbctl --control-socket SOCKET status --json`, parsed; fails the test when lbctl does.
pub fn lbctl_status(socket: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new(workspace_bin("lbctl"))
        .arg("--control-socket")
        .arg(socket)
        .args(["status", "--json"])
        .output()
        .expect("running lbctl");
    assert!(
        out.status.success(),
        "lbctl status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("lbctl --json prints JSON")
}

/// The BPF object lbd embeds, or a failure that says how to build it.
pub fn bpf_object() -> &'static [u8] {
    lbd::dataplane::embedded_object()
        .expect("lbd was built without its BPF object: run `cargo xtask build-ebpf` first (cargo xtask test does)")
}

/// Fails the test unless it runs as root (privileged tests never skip silently).
pub fn require_root() {
    assert!(
        lab::is_root(),
        "this test needs root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN): run it through `cargo xtask test` as root"
    );
}

/// lbd's TOML for an XDP lab: data plane `xdp` on `interface` in `attach` mode with room for 4
/// VIPs, `dataplane_extra` lines in the `[dataplane]` table, then `rest` (virtual servers).
pub fn xdp_toml(interface: &str, attach: &str, dataplane_extra: &str, rest: &str) -> String {
    format!(
        "[dataplane]\nmode = \"xdp\"\nxdp_interface = \"{interface}\"\nxdp_attach = \"{attach}\"\nxdp_max_vips = 4\n{dataplane_extra}\n{rest}"
    )
}
