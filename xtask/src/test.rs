//! `cargo xtask test`: every tier, cheapest first, with a summary.
//!
//! Tiers: setup, build-ebpf, fmt, clippy, unit (pure modules and the CLI, no privileges), fuzz
//! (the cargo-fuzz targets build and pass their seed corpora: VRRP codec, SMTP reply, config),
//! privileged (namespace lab, XDP attach, BPF_PROG_TEST_RUN; root), demo (`cargo xtask demo
//! --ci`: the README's first command, asserting on its outcome), vm (IPVS in Debian's kernel
//! under qemu). Under `CI=true` a tier that cannot run fails the run, saying what is missing;
//! elsewhere it is reported SKIPPED with the reason, never counted as passed.

use std::{
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use crate::util::{cargo, is_ci, is_root, root, status};

/// Options of `cargo xtask test`.
#[derive(clap::Args)]
pub(crate) struct TestArgs {
    /// Run only these tiers (setup, build-ebpf, fmt, clippy, unit, fuzz, privileged, demo, vm).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

struct Tier {
    name: &'static str,
    outcome: Outcome,
    took: Duration,
}

fn cargo_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root()).args(args);
    cmd
}

fn check(cmd: &mut Command) -> Outcome {
    match status(cmd) {
        Ok(s) if s.success() => Outcome::Passed,
        Ok(s) => Outcome::Failed(format!("exit {s}")),
        Err(e) => Outcome::Failed(format!("{e:#}")),
    }
}

/// Why privileged tiers cannot run here, if they cannot.
fn missing_privileges() -> Option<String> {
    if !is_root() {
        return Some(
            "needs root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN) for namespaces and BPF".to_owned(),
        );
    }
    for tool in ["ip", "bridge", "ping", "python3", "tcpdump", "keepalived"] {
        if !crate::util::have(tool) {
            return Some(format!("needs `{tool}` on PATH (run `cargo xtask setup`)"));
        }
    }
    None
}

fn missing_vm() -> Option<String> {
    if let Some(why) = missing_privileges() {
        return Some(why);
    }
    (!crate::util::have("qemu-system-x86_64"))
        .then(|| "needs qemu-system-x86_64 (run `cargo xtask setup`)".to_owned())
}

/// This xtask binary, for tiers that run another xtask job.
fn xtask_exe() -> Result<std::path::PathBuf, Outcome> {
    std::env::current_exe().map_err(|e| Outcome::Failed(format!("locating xtask: {e}")))
}

/// Free space where the build writes, as `df` reports it: CI machines of this kind have run out
/// of disk, and the log should show where.
fn free_disk() -> String {
    Command::new("df")
        .args(["-h", "--output=avail"])
        .arg(crate::util::target_dir().parent().unwrap_or(&root()))
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .nth(1)
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn run_tier(name: &'static str, body: impl FnOnce() -> Outcome) -> Tier {
    eprintln!("\n=== tier {name} (disk free: {}) ===", free_disk());
    let started = Instant::now();
    let outcome = body();
    Tier {
        name,
        outcome,
        took: started.elapsed(),
    }
}

fn gated(why: Option<String>, body: impl FnOnce() -> Outcome) -> Outcome {
    match why {
        Some(why) if is_ci() => Outcome::Failed(format!("cannot run under CI=true: {why}")),
        Some(why) => Outcome::Skipped(why),
        None => body(),
    }
}

pub(crate) fn test(args: &TestArgs) -> ExitCode {
    let started = Instant::now();
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let mut tiers = Vec::new();
    let mut stop = false;
    let mut tier =
        |name: &'static str, body: &mut dyn FnMut() -> Outcome, tiers: &mut Vec<Tier>| {
            if wanted(name) && !stop {
                let t = run_tier(name, body);
                // Without the toolchain or the object nothing later can be trusted.
                stop = matches!(t.outcome, Outcome::Failed(_))
                    && matches!(name, "setup" | "build-ebpf");
                tiers.push(t);
            }
        };
    tier(
        "setup",
        &mut || match crate::setup::setup() {
            Ok(()) => Outcome::Passed,
            Err(e) => Outcome::Failed(format!("{e:#}")),
        },
        &mut tiers,
    );
    tier(
        "build-ebpf",
        &mut || match crate::ebpf::build_ebpf() {
            Ok(_) => Outcome::Passed,
            Err(e) => Outcome::Failed(format!("{e:#}")),
        },
        &mut tiers,
    );
    tier(
        "fmt",
        &mut || check(&mut cargo_cmd(&["fmt", "--all", "--check"])),
        &mut tiers,
    );
    tier(
        "clippy",
        &mut || {
            check(&mut cargo_cmd(&[
                "clippy",
                "--locked",
                "--workspace",
                // lb-ebpf only builds for BPF; build-ebpf holds it to the lints.
                "--exclude",
                "lb-ebpf",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ]))
        },
        &mut tiers,
    );
    tier(
        "unit",
        &mut || {
            check(&mut cargo_cmd(&[
                "test",
                "--locked",
                "--workspace",
                "--exclude",
                "lb-ebpf",
            ]))
        },
        &mut tiers,
    );
    tier(
        "fuzz",
        &mut || {
            // The cargo-fuzz targets build (libFuzzer included) and run their seed corpora; the
            // coverage-guided runs are `cargo fuzz run TARGET` (README).
            // They build into the workspace's target directory, so the dependencies the two
            // lock files agree on are compiled and stored once.
            let fuzz = root().join("fuzz");
            let target_dir = crate::util::target_dir();
            match check(
                cargo_cmd(&["build", "--locked", "--manifest-path"])
                    .arg(fuzz.join("Cargo.toml"))
                    .arg("--target-dir")
                    .arg(&target_dir),
            ) {
                Outcome::Passed => {
                    for target in ["vrrp_advert", "smtp_reply", "config"] {
                        let outcome = check(
                            Command::new(target_dir.join("debug").join(target))
                                .arg("-runs=0")
                                .arg(fuzz.join("corpus").join(target)),
                        );
                        if !matches!(outcome, Outcome::Passed) {
                            return outcome;
                        }
                    }
                    Outcome::Passed
                }
                other => other,
            }
        },
        &mut tiers,
    );
    tier(
        "privileged",
        &mut || {
            gated(missing_privileges(), || {
                check(
                    cargo_cmd(&[
                        "test",
                        "--locked",
                        "-p",
                        "lb-tests",
                        "--features",
                        "privileged",
                    ])
                    .args(["--test", "netns_xdp", "--test", "xdp_test_run"])
                    .args([
                        "--test",
                        "netns_vrrp",
                        "--test",
                        "vrrp_tc_test_run",
                        "--test",
                        "netns_health",
                        "--test",
                        "netns_reload",
                    ]),
                )
            })
        },
        &mut tiers,
    );
    tier(
        "demo",
        &mut || {
            gated(missing_privileges(), || match xtask_exe() {
                Ok(xtask) => check(Command::new(xtask).args(["demo", "--", "--ci"])),
                Err(failed) => failed,
            })
        },
        &mut tiers,
    );
    tier(
        "vm",
        &mut || {
            gated(missing_vm(), || {
                let xtask = match xtask_exe() {
                    Ok(xtask) => xtask,
                    Err(failed) => return failed,
                };
                // Each test binary runs inside one VM: cargo runs `RUNNER test-binary args`.
                let runner = format!("{} vm --", xtask.display());
                check(
                    cargo_cmd(&[
                        "test",
                        "--locked",
                        "-p",
                        "lb-tests",
                        "--features",
                        "vm",
                        "--test",
                        "ipvs_vm",
                    ])
                    .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", runner),
                )
            })
        },
        &mut tiers,
    );

    eprintln!(
        "\n=== summary ({:.0}s, disk free: {}) ===",
        started.elapsed().as_secs_f64(),
        free_disk()
    );
    let mut ok = true;
    for t in &tiers {
        let (word, detail) = match &t.outcome {
            Outcome::Passed => ("PASS", String::new()),
            Outcome::Failed(why) => {
                ok = false;
                ("FAIL", format!(": {why}"))
            }
            Outcome::Skipped(why) => ("SKIPPED", format!(": {why}")),
        };
        eprintln!(
            "{word:<8} {:<11} {:>6.1}s{detail}",
            t.name,
            t.took.as_secs_f64()
        );
    }
    if stop {
        eprintln!("later tiers did not run: the toolchain or the BPF object failed");
    }
    if ok && !stop {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
