//! Embeds the BPF object when `cargo xtask build-ebpf` has built it.
//!
//! The object is looked for at `$LBD_BPF_OBJECT`, else at `<target>/bpf/lb-ebpf.o`, where
//! build-ebpf installs it. When present it is copied into OUT_DIR and `cfg(lbd_bpf_embedded)` is
//! set; otherwise lbd builds without it and runs IPVS-only (or loads one with `--bpf-object`).
//! The `<target>/bpf` directory is created here so cargo can watch it even before the first
//! build-ebpf: watching a missing path would rerun this script on every build.
use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    println!("cargo::rustc-check-cfg=cfg(lbd_bpf_embedded)");
    println!("cargo::rerun-if-env-changed=LBD_BPF_OBJECT");
    println!("cargo::rerun-if-env-changed=CARGO_TARGET_DIR");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let target =
        env::var_os("CARGO_TARGET_DIR").map_or_else(|| manifest.join("../target"), PathBuf::from);
    let object = match env::var_os("LBD_BPF_OBJECT") {
        Some(path) => PathBuf::from(path),
        None => {
            let dir = target.join("bpf");
            fs::create_dir_all(&dir)?;
            println!("cargo::rerun-if-changed={}", dir.display());
            dir.join("lb-ebpf.o")
        }
    };
    let out = PathBuf::from(env::var("OUT_DIR")?).join("lb-ebpf.o");
    if object.is_file() {
        println!("cargo::rerun-if-changed={}", object.display());
        fs::copy(&object, &out)?;
        println!("cargo::rustc-cfg=lbd_bpf_embedded");
    } else {
        // A stale copy from an earlier build must not be embedded; absence is fine.
        fs::remove_file(&out).or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    }
    Ok(())
}
