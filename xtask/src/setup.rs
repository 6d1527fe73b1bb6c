//! `cargo xtask setup`: everything the project needs on a fresh Debian 12 machine, idempotent and
//! quick when already done.
//!
//! - Debian packages: Debian's rustc-web/cargo-web/rust-web-src (the BPF build's compiler and the
//!   `core` source of exactly the same release), the llvm-N-dev matching rustc-web's LLVM, and
//!   the tools the tests and the demo use (iproute2, keepalived, tcpdump, qemu, busybox, ipvsadm..).
//! - bpf-linker 0.13.0 built against that LLVM into `.tools/` (see
//!   ../shared/docs/ebpf-toolchain.md for why each of these choices).
//! - the IPVS VM's kernel and initramfs (`crate::vm::prepare`).

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::util::{have_package as installed, output, run, tools_dir};

/// Packages every part of the project uses (the LLVM dev package is added once its major is known).
const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "iproute2",
    "iputils-ping",
    "keepalived",
    "tcpdump",
    "qemu-system-x86",
    "busybox-static",
    "kmod",
    "ipvsadm",
    "python3",
    "procps",
    "xz-utils",
    // `cargo xtask bench xdp`: the packet generator and the nftables DNAT baseline.
    "netsniff-ng",
    "nftables",
    "ethtool",
    // promtool, which checks lbd's /metrics in the privileged tests.
    "prometheus",
];

/// bpf-linker release known to work with aya 0.14 (LLVM 21-23).
pub(crate) const BPF_LINKER_VERSION: &str = "0.13.0";

fn apt_install(packages: &[String]) -> anyhow::Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing {}", packages.join(" "));
    // Other processes (unattended upgrades) may hold the dpkg lock: wait for it.
    let lock = "DPkg::Lock::Timeout=300";
    run(Command::new("apt-get").args(["update", "-qq", "-o", lock]))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "-o",
            lock,
        ])
        .args(packages))
}

/// The LLVM major version Debian's rustc-web links.
pub(crate) fn llvm_major() -> anyhow::Result<String> {
    let vv = output(Command::new("/usr/bin/rustc").arg("-vV"))?;
    vv.lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .map(str::to_owned)
        .context("no LLVM version in /usr/bin/rustc -vV")
}

/// Installs the Debian packages and checks the BPF compiler pairing.
pub(crate) fn packages() -> anyhow::Result<()> {
    if !crate::util::is_root() {
        let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        bail!("setup needs root to install {}", missing.join(" "));
    }
    let missing: Vec<String> = PACKAGES
        .iter()
        .filter(|p| !installed(p))
        .map(|p| (*p).to_owned())
        .collect();
    apt_install(&missing)?;
    let llvm = format!("llvm-{}-dev", llvm_major()?);
    if !installed(&llvm) {
        apt_install(&[llvm])?;
    }
    // The compiler and the core source must be the very same release (ebpf-toolchain.md, failure 3).
    let rustc = output(Command::new("/usr/bin/rustc").arg("-V"))?;
    let rustc = rustc
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let src = output(Command::new("dpkg-query").args(["-W", "-f=${Version}", "rust-web-src"]))?;
    let src = src.split('+').next().unwrap_or_default();
    if rustc != src {
        bail!(
            "rustc-web {rustc} and rust-web-src {src} differ: reinstall both from the same Debian release"
        );
    }
    Ok(())
}

/// Builds bpf-linker into `.tools/` unless the right version is there.
pub(crate) fn bpf_linker() -> anyhow::Result<()> {
    let bin = tools_dir().join("bin/bpf-linker");
    let current = Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    if current.is_ok_and(|v| v.contains(BPF_LINKER_VERSION)) {
        return Ok(());
    }
    let llvm = llvm_major()?;
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM {llvm} (about a minute)"
    );
    run(Command::new(crate::util::cargo())
        .env("LLVM_PREFIX", format!("/usr/lib/llvm-{llvm}"))
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--no-default-features",
        ])
        .args(["--features", &format!("llvm-{llvm}")])
        .arg("--root")
        .arg(tools_dir()))
}

/// The whole setup.
pub(crate) fn setup() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    packages()?;
    bpf_linker()?;
    crate::vm::prepare()?;
    eprintln!("setup: done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}
