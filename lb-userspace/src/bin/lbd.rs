//! `lbd`: the load-balancer control plane daemon.
//!
//! `lbd run --config FILE` runs in the foreground, logging to stderr (journald adds timestamps
//! when it runs under systemd). `lbd check-config FILE` validates a file and prints every error
//! as `file:line:col: message`. FILE is lbd's TOML when it ends in `.toml`, keepalived.conf
//! syntax otherwise.
#![expect(
    unused_crate_dependencies,
    reason = "the library's dependencies are the package's; cargo cannot scope them per target"
)]

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use lbd::{
    config::{self, Format, Overrides, ParseCache, Unimplemented},
    control::DEFAULT_SOCKET,
    daemon::{self, RunOptions},
    dataplane::BpfObject,
};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "lbd",
    version,
    about = "Load-balancer control plane for Linux directors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Toml,
    Keepalived,
}

#[derive(Clone, Copy, ValueEnum)]
enum DataplaneArg {
    None,
    Ipvs,
    Xdp,
    #[value(name = "xdp+ipvs")]
    XdpIpvs,
}

impl DataplaneArg {
    fn name(self) -> &'static str {
        match self {
            DataplaneArg::None => "none",
            DataplaneArg::Ipvs => "ipvs",
            DataplaneArg::Xdp => "xdp",
            DataplaneArg::XdpIpvs => "xdp+ipvs",
        }
    }
}

#[derive(clap::Args, Clone)]
struct ConfigArgs {
    /// Syntax of the file (default: toml for *.toml, keepalived otherwise).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Skip keepalived keywords lbd does not implement yet, with a warning, instead of failing.
    #[arg(long)]
    allow_unimplemented: bool,
    /// Data plane, overriding the file's: none, ipvs, xdp or xdp+ipvs.
    #[arg(long, value_enum)]
    dataplane: Option<DataplaneArg>,
    /// Interface for the XDP data plane, overriding the file's.
    #[arg(long, value_name = "IFACE")]
    xdp_interface: Option<String>,
    /// keepalived's config id, for `@id` lines and `${_INSTANCE}` (default: the host name up
    /// to its first dot).
    #[arg(long, short = 'i', value_name = "ID")]
    config_id: Option<String>,
}

/// Includes, the environment and randomness for keepalived.conf's preprocessor.
struct FileSystem;

impl config::preprocess::Sources for FileSystem {
    fn read(&self, path: &std::path::Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn glob(&self, pattern: &str) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = glob::glob(pattern)
            .map(|paths| paths.flatten().collect())
            .unwrap_or_default();
        found.sort();
        found
    }

    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn random(&self, min: u32, max: u32) -> u32 {
        use std::hash::BuildHasher as _;
        let n = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        min + (n % u64::from(max - min + 1)) as u32
    }
}

/// keepalived's default config id: the host name up to its first dot.
fn default_config_id() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .and_then(|h| h.split('.').next().map(str::to_owned))
        .unwrap_or_default()
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    Run {
        /// Configuration file.
        #[arg(long, short = 'f', value_name = "FILE")]
        config: String,
        #[command(flatten)]
        config_args: ConfigArgs,
        /// Unix socket for lbctl.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
        control_socket: PathBuf,
        /// Write the daemon's pid here.
        #[arg(long, value_name = "PATH")]
        pid_file: Option<PathBuf>,
        /// Load the BPF object from this file instead of the embedded one.
        #[arg(long, value_name = "PATH")]
        bpf_object: Option<PathBuf>,
        /// Keep VRRP in user space: no kernel record of adverts (for comparison).
        #[arg(long)]
        no_vrrp_bpf: bool,
        /// Leave IPVS as it is at stop (keepalived's -I), and the XDP program attached and
        /// pinned: a restarted or upgraded lbd adopts both without touching a connection.
        #[arg(long, short = 'I', alias = "keep-dataplane")]
        dont_release_ipvs: bool,
        /// Serve Prometheus `/metrics` and the status JSON at `/status` over HTTP on this
        /// address (`--http` alone: 127.0.0.1:9467).
        #[arg(long = "http", value_name = "ADDRESS", num_args = 0..=1, default_missing_value = "127.0.0.1:9467")]
        http_address: Option<std::net::SocketAddr>,
        /// Where SIGUSR1, SIGUSR2 and SIGRTMIN+2 write keepalived's `keepalived.data` and
        /// `keepalived_check.data`, `keepalived.stats` and `keepalived.json`.
        #[arg(long, value_name = "DIR", default_value = "/tmp")]
        dump_dir: PathBuf,
    },
    /// Validate a configuration file: exit 0 when valid, else print every error.
    CheckConfig {
        /// Configuration file.
        file: String,
        #[command(flatten)]
        config_args: ConfigArgs,
        /// Also ask the running lbd what reloading this file would change (`+` added,
        /// `-` removed, `~` changed, `!` applied only at restart).
        #[arg(long)]
        diff: bool,
        /// The running lbd's control socket, for --diff.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
        control_socket: PathBuf,
    },
    /// Print the OpenAPI 3.0 description of the HTTP API (`run --http`).
    Openapi,
    /// Print a keepalived.conf as lbd's TOML (which loads to the same configuration).
    ImportKeepalived {
        /// keepalived.conf.
        file: String,
        #[command(flatten)]
        config_args: ConfigArgs,
    },
}

/// Reads and validates the file; prints warnings and errors; `None` when invalid.
fn load(
    file: &str,
    args: &ConfigArgs,
    cache: Option<&mut ParseCache>,
) -> anyhow::Result<Option<lbd::model::Model>> {
    std::fs::metadata(file).with_context(|| format!("reading {file}"))?;
    match load_model(file, args, cache) {
        Ok((model, warnings)) => {
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            Ok(Some(model))
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("{error}");
            }
            eprintln!(
                "{file}: {} error{}",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            Ok(None)
        }
    }
}

/// The model in `file` and its warnings, or every error. With a `cache` (lbd run's), only
/// what changed since the last load is parsed again.
fn load_model(
    file: &str,
    args: &ConfigArgs,
    cache: Option<&mut ParseCache>,
) -> Result<(lbd::model::Model, Vec<String>), Vec<String>> {
    let text = std::fs::read_to_string(file).map_err(|e| vec![format!("reading {file}: {e}")])?;
    let format = match args.format {
        Some(FormatArg::Toml) => Format::Toml,
        Some(FormatArg::Keepalived) => Format::Keepalived,
        None => Format::from_path(file),
    };
    let unimplemented = if args.allow_unimplemented {
        Unimplemented::Warn
    } else {
        Unimplemented::Reject
    };
    let overrides = Overrides {
        dataplane: args.dataplane.map(|d| d.name().to_owned()),
        xdp_interface: args.xdp_interface.clone(),
    };
    let config_id = args.config_id.clone().unwrap_or_else(default_config_id);
    config::load_cached(
        file,
        &text,
        format,
        unimplemented,
        &overrides,
        &config_id,
        &FileSystem,
        cache,
    )
    .map(|loaded| {
        let warnings = loaded.warnings.iter().map(ToString::to_string).collect();
        (loaded.model, warnings)
    })
    .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

/// `check-config --diff`: what the running lbd would change on reloading `file`.
fn print_diff(file: &str, socket: &std::path::Path) -> anyhow::Result<ExitCode> {
    let path = std::fs::canonicalize(file).with_context(|| format!("resolving {file}"))?;
    let request = lbd::control::Request::Reload {
        dry_run: true,
        config: Some(path.display().to_string()),
    };
    match lbd::control::call(socket, &request, std::time::Duration::from_secs(30))? {
        lbd::control::Response::Reloaded(report) => {
            let lines = report.plan.lines();
            if lines.is_empty() {
                println!("no change: the running lbd already runs this configuration");
            }
            for line in lines {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        lbd::control::Response::Error { message } => {
            eprintln!("lbd: {message}");
            Ok(ExitCode::FAILURE)
        }
        other => anyhow::bail!("unexpected answer from lbd: {other:?}"),
    }
}

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // Under systemd, journald stamps every line itself.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

/// SIGTERM or SIGINT. The handlers are installed when this is called, not when the future is
/// first polled: a signal that arrives while lbd starts up stops it cleanly too.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop lbd with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    }
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::ImportKeepalived { file, config_args } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
            let unimplemented = if config_args.allow_unimplemented {
                Unimplemented::Warn
            } else {
                Unimplemented::Reject
            };
            let config_id = config_args.config_id.unwrap_or_else(default_config_id);
            match config::keepalived_spec(&file, &text, unimplemented, &config_id, &FileSystem) {
                Ok((spec, warnings)) => {
                    for warning in &warnings {
                        eprintln!("warning: {warning}");
                    }
                    print!("{}", config::import::to_toml(&spec));
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    for error in &errors {
                        eprintln!("{error}");
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Openapi => {
            println!(
                "{}",
                serde_json::to_string_pretty(&lbd::control::openapi())?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig {
            file,
            config_args,
            diff,
            control_socket,
        } => {
            let Some(model) = load(&file, &config_args, None)? else {
                return Ok(ExitCode::FAILURE);
            };
            // The process ends here: freeing a big model piece by piece would only cost time
            // (a tenth of a 65,024-instance check).
            std::mem::forget(model);
            if diff {
                return print_diff(&file, &control_socket);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            config,
            config_args,
            control_socket,
            pid_file,
            bpf_object,
            no_vrrp_bpf,
            dont_release_ipvs,
            http_address,
            dump_dir,
        } => {
            init_logging();
            // A reload parses again only what changed since the last load.
            let mut cache = ParseCache::default();
            let Some(model) = load(&config, &config_args, Some(&mut cache))? else {
                return Ok(ExitCode::FAILURE);
            };
            let cache = std::sync::Mutex::new(cache);
            let loader_args = config_args;
            let loader = daemon::ConfigLoader(std::sync::Arc::new(move |path: &str, dry_run| {
                // A dry run (check-config --diff) reads the whole file: the cache keeps what
                // runs.
                let mut cache = cache
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let cache = (!dry_run).then_some(&mut *cache);
                load_model(path, &loader_args, cache).map(|(model, warnings)| {
                    for warning in warnings {
                        tracing::warn!("{warning}");
                    }
                    model
                })
            }));
            let options = RunOptions {
                loader: Some(loader),
                config_path: config,
                control_socket,
                pid_file,
                bpf_object: BpfObject::choose(bpf_object.as_deref()),
                vrrp_bpf: !no_vrrp_bpf,
                keep_ipvs: dont_release_ipvs,
                http_address,
                dump_dir,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            runtime.block_on(async { daemon::run(model, options, shutdown_signal()).await })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
