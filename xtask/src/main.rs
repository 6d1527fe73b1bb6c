//! Project jobs: `cargo xtask <job>` (the alias is in .cargo/config.toml).
//!
//! # Layout
//! - `setup`: Debian packages, bpf-linker, the IPVS VM's kernel.
//! - `build-ebpf`: the BPF object, for lbd to embed.
//! - `vm -- CMD`: CMD as root in a VM with Debian's kernel (IPVS).
//! - `test`: every test tier, with a summary; `.ci/run` calls it.
//! - `bench xdp`: the XDP program per packet (BPF_PROG_TEST_RUN) against a floor program, Maglev
//!   table updates, and packets per second through a director against kernel forwarding and
//!   nftables DNAT.
//! - `demo`: lbd in a namespace lab, explained as it runs.

mod ebpf;
mod setup;
mod test;
mod util;
mod vm;

use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "lbd's project jobs")]
struct Cli {
    #[command(subcommand)]
    job: Job,
}

#[derive(Subcommand)]
enum Job {
    /// Install everything the project needs (idempotent).
    Setup,
    /// Build the BPF object into target/bpf/lb-ebpf.o.
    BuildEbpf,
    /// Run a command as root in the IPVS VM (Debian's kernel under qemu).
    Vm {
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Run every test tier.
    Test(test::TestArgs),
    /// Run a benchmark: `xdp`, `failover`, `watchdog`, `checks`, `ipvs` or `config`.
    Bench {
        /// Which benchmark.
        name: String,
        /// Extra arguments for the benchmark.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run lbd in a namespace lab and show what it does.
    Demo {
        /// Extra arguments for the demo (`--help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// Builds the BPF object and lbd, then runs a binary of the lb-tests crate (release) with `args`.
fn run_tests_bin(bin: &str, args: &[String]) -> anyhow::Result<ExitCode> {
    ebpf::build_ebpf()?;
    // The lab runs the real binaries, from the same profile as the tool.
    util::run(Command::new(util::cargo()).current_dir(util::root()).args([
        "build",
        "--release",
        "--locked",
        "-q",
        "-p",
        "lb-userspace",
        "--bins",
    ]))?;
    let status = util::status(
        Command::new(util::cargo())
            .current_dir(util::root())
            .args([
                "run",
                "--release",
                "--locked",
                "-q",
                "-p",
                "lb-tests",
                "--bin",
                bin,
                "--",
            ])
            .args(args),
    )?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().job {
        Job::Setup => setup::setup().map(|()| ExitCode::SUCCESS),
        Job::BuildEbpf => ebpf::build_ebpf().map(|_| ExitCode::SUCCESS),
        Job::Vm { command } => {
            let rc = vm::run_in_vm(&command)?;
            Ok(ExitCode::from(u8::try_from(rc).unwrap_or(125)))
        }
        Job::Test(args) => Ok(test::test(&args)),
        Job::Bench { name, args } => {
            let mut all = vec![name];
            all.extend(args);
            setup::setup()?;
            run_tests_bin("lb-bench", &all)
        }
        Job::Demo { args } => {
            setup::setup()?;
            run_tests_bin("lb-demo", &args)
        }
    }
}
