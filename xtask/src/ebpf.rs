//! `cargo xtask build-ebpf`: lb-ebpf into a BPF object, with Debian's rustc-web and
//! `-Z build-std=core`, installed at `target/bpf/lb-ebpf.o` where lbd's build script embeds it.

use std::{path::PathBuf, process::Command};

use anyhow::Context as _;

use crate::util::{root, run, target_dir, tools_dir};

/// Where the object is installed for lbd's build script.
pub(crate) fn object_path() -> PathBuf {
    target_dir().join("bpf/lb-ebpf.o")
}

/// Builds the BPF object (setting up the toolchain first if needed).
pub(crate) fn build_ebpf() -> anyhow::Result<PathBuf> {
    crate::setup::packages()?;
    crate::setup::bpf_linker()?;
    let ebpf_target = target_dir().join("ebpf");
    let path = format!(
        "{}:/usr/bin:{}",
        tools_dir().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Debian's cargo and rustc, not rustup's: only they ship a `core` source of their own release.
    run(Command::new("/usr/bin/cargo")
        .current_dir(root().join("lb-ebpf"))
        .env("PATH", path)
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", &ebpf_target)
        // Packet fields sit at any offset: LLVM 22 loads them whole instead of a byte at a time
        // (x86-64 and arm64 verifiers allow misaligned packet access; byte loads spilled a
        // stack slot each).
        .env(
            "RUSTFLAGS",
            "-C debuginfo=2 -C link-arg=--btf -C link-arg=--cpu-features=+allows-misaligned-mem-access",
        )
        .env_remove("RUSTC_WRAPPER")
        // `cargo rustc` so that `-D warnings` holds lb-ebpf to the workspace lints without
        // applying to the `core` that build-std compiles. (Host clippy cannot check this crate:
        // with the workspace's features unified, lb-common brings std into it.)
        .args([
            "rustc",
            "--release",
            "--locked",
            "-p",
            "lb-ebpf",
            "--bin",
            "lb-ebpf",
        ])
        .args([
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
        ]))?;
    let built = ebpf_target.join("bpfel-unknown-none/release/lb-ebpf");
    let installed = object_path();
    std::fs::create_dir_all(installed.parent().context("object path has a parent")?)?;
    // Only replace the installed copy when it changed, so lbd is not rebuilt for nothing.
    let new = std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    if std::fs::read(&installed).ok().as_deref() != Some(&new[..]) {
        std::fs::write(&installed, &new)
            .with_context(|| format!("writing {}", installed.display()))?;
    }
    eprintln!("build-ebpf: {} ({} bytes)", installed.display(), new.len());
    Ok(installed)
}
