//! Running commands, with the command line echoed and failures named.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
};

use anyhow::{Context as _, bail};

/// The workspace root (xtask lives one level below it).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The workspace target directory.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// The project-local tools directory (bpf-linker).
pub(crate) fn tools_dir() -> PathBuf {
    root().join(".tools")
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd`, inheriting stdio; fails unless it exits 0.
pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let line = describe(cmd);
    eprintln!("+ {line}");
    let status = cmd.status().with_context(|| format!("starting {line}"))?;
    if !status.success() {
        bail!("{line} failed: {status}");
    }
    Ok(())
}

/// Runs `cmd` and returns its exit status without judging it.
pub(crate) fn status(cmd: &mut Command) -> anyhow::Result<ExitStatus> {
    let line = describe(cmd);
    eprintln!("+ {line}");
    cmd.status().with_context(|| format!("starting {line}"))
}

/// Runs `cmd` quietly and returns its stdout; fails unless it exits 0.
pub(crate) fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let line = describe(cmd);
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {line}"))?;
    if !out.status.success() {
        bail!("{line} failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program` is on PATH.
pub(crate) fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Whether we run as root.
#[expect(
    unsafe_code,
    reason = "geteuid: libc call without a safe wrapper in std"
)]
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether this run is under CI (`CI=true`): missing privileges or tools fail instead of skipping.
pub(crate) fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether a Debian package is installed.
pub(crate) fn have_package(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("ok installed"))
}

/// The cargo that runs xtask (rustup's), for the workspace's own builds.
pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}
