//! The control protocol between `lbctl` and `lbd`, over a Unix stream socket.
//!
//! One JSON object per line each way: the client writes a [`Request`], the daemon answers with a
//! [`Response`] and closes the connection. The types are the API's schema; `lbctl --json`
//! prints them as they are.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// Where `lbd` listens and `lbctl` connects unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/lbd/lbd.sock";

/// A request to the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The state of everything lbd runs.
    Status,
    /// The metrics in Prometheus' text format (what HTTP `/metrics` serves a scraper that
    /// does not ask for OpenMetrics).
    Metrics,
    /// Drain real servers: weight 0 (no new connections), established connections kept.
    Drain {
        /// `ADDRESS:PORT`, or `ADDRESS` for every port.
        real_server: String,
        /// Only in this virtual server (keepalived's name, as status shows it).
        virtual_server: Option<String>,
    },
    /// Undo [`Request::Drain`].
    Undrain {
        /// As for drain.
        real_server: String,
        /// As for drain.
        virtual_server: Option<String>,
    },
    /// Take a virtual server (its VIP's services) out of service: it leaves IPVS and XDP; its
    /// checks keep running.
    Disable {
        /// keepalived's name, as status shows it.
        virtual_server: String,
    },
    /// Put it back.
    Enable {
        /// keepalived's name, as status shows it.
        virtual_server: String,
    },
    /// Re-read the configuration and apply only what changed (SIGHUP does the same).
    Reload {
        /// Only say what would change (`lbd check-config --diff`).
        #[serde(default)]
        dry_run: bool,
        /// Read this file instead of the one lbd runs (with `dry_run`).
        #[serde(default)]
        config: Option<String>,
    },
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Status`] (boxed: it dwarfs the error variant).
    Status(Box<Status>),
    /// Answer to [`Request::Metrics`].
    Metrics {
        /// Prometheus text format.
        text: String,
    },
    /// Answer to [`Request::Disable`] and [`Request::Enable`].
    Done {
        /// What was done, in words.
        message: String,
    },
    /// Answer to [`Request::Drain`] and [`Request::Undrain`]: the real servers it applied to.
    Drained {
        /// keepalived's names, one per virtual server the real server is in.
        real_servers: Vec<String>,
    },
    /// Answer to [`Request::Reload`].
    Reloaded(Box<ReloadReport>),
    /// The request could not be served.
    Error {
        /// Why.
        message: String,
    },
}

/// What a reload changed, or with `dry_run` would change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReloadReport {
    /// The difference between the running configuration and the file.
    pub plan: crate::reload::ReloadPlan,
    /// Whether it was applied (false for a dry run).
    pub applied: bool,
    /// The health checks: probes kept, started and stopped.
    pub health: Option<crate::health::HealthReload>,
    /// VRRP instances kept untouched, changed in place, added and removed.
    pub vrrp_kept: usize,
    /// VRRP instances changed in place, keeping their state.
    pub vrrp_changed: usize,
    /// VRRP instances started.
    pub vrrp_added: usize,
    /// VRRP instances stopped.
    pub vrrp_removed: usize,
    /// Interfaces whose VRRP driver had to restart (its instances start afresh), and why.
    pub vrrp_restarted: Vec<String>,
    /// Data-plane operations the reconciler applied for it.
    pub dataplane_operations: u64,
    /// From the request until the data plane had it, microseconds.
    pub took_us: u64,
}

/// The state of a running lbd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Status {
    /// lbd's version.
    pub version: String,
    /// The daemon's process id.
    pub pid: u32,
    /// The configuration file it runs.
    pub config: String,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// The data plane.
    pub dataplane: DataplaneStatus,
    /// Every virtual server.
    pub virtual_servers: Vec<VirtualServerStatus>,
    /// keepalived's `router_id`, if configured.
    pub router_id: Option<String>,
    /// Every VRRP instance.
    pub vrrp: Vec<VrrpStatus>,
    /// The reconciler, when there are virtual servers.
    pub reconciler: Option<ReconcilerStatus>,
    /// The services and real servers lbd wants programmed now (health applied).
    pub desired_services: Vec<ServiceStatus>,
    /// The kernel's IPVS table with its counters, when the kernel has IPVS.
    pub ipvs_services: Vec<IpvsServiceStatus>,
}

/// A service in the kernel's IPVS table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IpvsServiceStatus {
    /// keepalived's notation.
    pub service: String,
    /// Scheduler.
    pub scheduler: String,
    /// Counters.
    pub stats: crate::ipvs::msg::Stats,
    /// Destinations.
    pub real_servers: Vec<IpvsDestStatus>,
}

/// A destination in the kernel's IPVS table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IpvsDestStatus {
    /// address:port.
    pub address: String,
    /// Weight.
    pub weight: u32,
    /// Active connections.
    pub active_conns: u32,
    /// Inactive connections.
    pub inactive_conns: u32,
    /// Counters.
    pub stats: crate::ipvs::msg::Stats,
}

/// A service as lbd wants it programmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServiceStatus {
    /// keepalived's notation: `[203.0.113.1]:tcp:80`, `FWM 5`.
    pub service: String,
    /// Scheduler.
    pub scheduler: String,
    /// Its destinations.
    pub real_servers: Vec<DestStatus>,
}

/// A destination as lbd wants it programmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DestStatus {
    /// address:port.
    pub address: String,
    /// Weight (0: inhibited or drained).
    pub weight: u32,
    /// nat, dr or tun.
    pub forwarding: String,
}

/// The reconciler's work so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReconcilerStatus {
    /// `ipvs`, or `fake` (check-only: no data plane programs real servers).
    pub backend: String,
    /// Distinct probes running (a checker shared by virtual servers counts once).
    pub probes: usize,
    /// Passes run.
    pub passes: u64,
    /// Operations applied.
    pub applied: u64,
    /// Operations that failed.
    pub errors: u64,
    /// The last error.
    pub last_error: Option<String>,
}

/// One VRRP instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VrrpStatus {
    /// Its name.
    pub name: String,
    /// Interface.
    pub interface: String,
    /// Virtual router id.
    pub vrid: u8,
    /// VRRP version.
    pub version: u8,
    /// MASTER, BACKUP or INIT (keepalived's words; RFC 9568 says Active for MASTER).
    pub state: String,
    /// Configured priority.
    pub priority: u8,
    /// The active router as last heard, while backup.
    pub active_router: Option<String>,
    /// Active_Adver_Interval in centiseconds.
    pub advert_int_cs: u16,
    /// Virtual addresses.
    pub addresses: Vec<String>,
    /// Its VMAC interface, with `use_vmac`.
    pub vmac: Option<String>,
    /// What the kernel recorded of its adverts (`None`: no BPF, user space only).
    pub kernel: Option<KernelAdverts>,
    /// Takeovers decided by the kernel's master-down timer.
    pub kernel_takeovers: u64,
    /// Transitions to MASTER.
    pub became_active: u64,
    /// Adverts received and processed.
    pub adverts_received: u64,
    /// Adverts sent.
    pub adverts_sent: u64,
    /// Priority-0 adverts received (an active router leaving).
    pub priority_zero_received: u64,
    /// Priority-0 adverts sent (on leaving the active state).
    pub priority_zero_sent: u64,
    /// Adverts dropped by a check, all reasons.
    pub errors: u64,
    /// The error counters one by one (RFC 6527 and RFC 2787 statistics).
    pub counters: VrrpCounters,
}

/// The kernel's record of one virtual router's adverts (lbd's TC program).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KernelAdverts {
    /// Adverts counted on the wire.
    pub adverts: u64,
    /// How long ago the latest arrived, in microseconds.
    pub last_us_ago: Option<u64>,
    /// The latest one's sender.
    pub sender: Option<String>,
    /// The latest one's priority.
    pub priority: Option<u8>,
}

/// The RFC 6527 (`vrrpv3StatisticsEntry`) and RFC 2787 counters of one instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VrrpCounters {
    /// Transitions out of MASTER.
    pub released_master: u64,
    /// TTL / hop limit not 255.
    pub ttl_errors: u64,
    /// Bad checksum.
    pub checksum_errors: u64,
    /// Length inconsistent with the address count.
    pub length_errors: u64,
    /// Another VRRP version.
    pub version_errors: u64,
    /// Not an ADVERTISEMENT.
    pub invalid_type_errors: u64,
    /// VRID 0.
    pub vrid_errors: u64,
    /// v2: interval differs from ours (or is 0).
    pub advert_interval_errors: u64,
    /// Address list differs from ours.
    pub address_list_errors: u64,
    /// v2: unknown authentication type.
    pub invalid_auth_type: u64,
    /// v2: authentication type differs from ours.
    pub auth_type_mismatch: u64,
    /// v2: wrong password.
    pub auth_failures: u64,
    /// Malformed IP header.
    pub ip_header_errors: u64,
}

/// What the data plane is and does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DataplaneStatus {
    /// The mode the configuration asks for: none, ipvs, xdp or xdp+ipvs.
    pub configured_mode: String,
    /// The mode running: differs when XDP could not be used and lbd fell back to IPVS-only.
    pub mode: String,
    /// Where the BPF object came from: a file, embedded, or none.
    pub bpf_object: String,
    /// The XDP program, when attached.
    pub xdp: Option<XdpStatus>,
    /// Why XDP is not running although the configuration asks for it.
    pub xdp_error: Option<String>,
    /// The kernel's IPVS, when the mode uses it.
    pub ipvs: Option<IpvsStatus>,
}

/// The attached XDP program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct XdpStatus {
    /// Interface it is attached to.
    pub interface: String,
    /// native or generic.
    pub attach_mode: String,
    /// Packet counters by reason (`lb_common::Counter` names), summed over CPUs.
    pub counters: Vec<(String, u64)>,
}

/// The kernel's IPVS as lbd sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IpvsStatus {
    /// Whether the kernel has IPVS.
    pub available: bool,
    /// IPVS version, when available.
    pub version: Option<String>,
    /// In words.
    pub detail: String,
}

/// One virtual server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VirtualServerStatus {
    /// keepalived's name for it: `[203.0.113.10]:tcp:80`, `[GROUP]:80`, `FWM 5`.
    pub name: String,
    /// VIP:port of its first service (`fwmark N` for a firewall-mark service).
    pub vip: String,
    /// tcp, udp or sctp.
    pub protocol: String,
    /// IPVS scheduler.
    pub scheduler: String,
    /// nat, dr or tun.
    pub forwarding: String,
    /// Whether it has quorum (None before health checks run).
    pub quorum_up: Option<bool>,
    /// Taken out of service by an operator.
    #[serde(default)]
    pub disabled: bool,
    /// Packets the XDP program counted for this VIP (None without XDP).
    pub xdp_packets: Option<u64>,
    /// Their bytes.
    pub xdp_bytes: Option<u64>,
    /// Real servers.
    pub real_servers: Vec<RealServerStatus>,
}

/// One real server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RealServerStatus {
    /// address:port.
    pub address: String,
    /// Weight now (configured, changed by dynamic checkers).
    pub weight: u32,
    /// Whether all its checkers are up (None before health checks run).
    pub alive: Option<bool>,
    /// Its checkers.
    pub checkers: Vec<crate::health::CheckerView>,
    /// Drained by an operator (weight 0, connections kept).
    #[serde(default)]
    pub drained: bool,
    /// Packets the XDP path forwarded to it (every VIP), when XDP runs.
    #[serde(default)]
    pub xdp_packets: Option<u64>,
    /// Their bytes.
    #[serde(default)]
    pub xdp_bytes: Option<u64>,
}

/// Errors of the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting to the socket failed.
    #[error("connecting to {path}: {source} (is lbd running, and are you root?)")]
    Connect {
        /// Socket path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("talking to lbd: {0}")]
    Io(#[from] std::io::Error),
    /// The answer was not valid JSON of the protocol.
    #[error("lbd sent an answer lbctl does not understand: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Sends one request to the daemon listening on `path` and returns its answer.
pub fn call(path: &Path, request: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
        path: path.display().to_string(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    (&stream).write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    Ok(serde_json::from_str(&answer)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_is_tagged_json() {
        assert_eq!(
            serde_json::to_string(&Request::Status).expect("json"),
            r#"{"request":"status"}"#
        );
        let error = Response::Error {
            message: "no".into(),
        };
        let json = serde_json::to_string(&error).expect("json");
        assert_eq!(json, r#"{"response":"error","message":"no"}"#);
        assert_eq!(
            serde_json::from_str::<Response>(&json).expect("parses"),
            error
        );
        assert!(serde_json::from_str::<Request>(r#"{"request":"reboot"}"#).is_err());
    }
}

/// The body of an HTTP drain or undrain (the same fields as [`Request::Drain`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DrainBody {
    /// `ADDRESS:PORT`, or `ADDRESS` for every port.
    pub real_server: String,
    /// Only in this virtual server (keepalived's name, as status shows it).
    #[serde(default)]
    pub virtual_server: Option<String>,
}

/// The body of an HTTP reload (optional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReloadBody {
    /// Only say what would change.
    #[serde(default)]
    pub dry_run: bool,
}

/// The body of an HTTP disable or enable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VirtualServerBody {
    /// keepalived's name of the virtual server, as status shows it.
    pub virtual_server: String,
}

/// The answer to an HTTP drain or undrain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DrainedBody {
    /// keepalived's names of the real servers it applied to, one per virtual server.
    pub real_servers: Vec<String>,
}

/// A done answer over HTTP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MessageBody {
    /// What was done.
    pub message: String,
}

/// An error answer over HTTP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// Why.
    pub error: String,
}

/// The OpenAPI 3.0 description of lbd's HTTP API (`lbd run --http`), its schemas generated
/// from the very types the API serves.
pub fn openapi() -> serde_json::Value {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let status = generator.subschema_for::<Status>();
    let drain = generator.subschema_for::<DrainBody>();
    let drained = generator.subschema_for::<DrainedBody>();
    let error = generator.subschema_for::<ErrorBody>();
    let virtual_server = generator.subschema_for::<VirtualServerBody>();
    let done = generator.subschema_for::<MessageBody>();
    let reload = generator.subschema_for::<ReloadBody>();
    let reloaded = generator.subschema_for::<ReloadReport>();
    let schemas = generator.take_definitions(true);
    let json =
        |schema: &schemars::Schema| serde_json::json!({ "application/json": { "schema": schema } });
    // A POST action: its body, its answer, and its two errors.
    let post = |summary: &str,
                body: &schemars::Schema,
                ok: (&str, &schemars::Schema),
                bad_body: &str,
                missing: &str| {
        serde_json::json!({
            "post": {
                "summary": summary,
                "requestBody": { "required": true, "content": json(body) },
                "responses": {
                    "200": { "description": ok.0, "content": json(ok.1) },
                    "400": { "description": bad_body, "content": json(&error) },
                    "404": { "description": missing, "content": json(&error) }
                }
            }
        })
    };
    let applied = ("The real servers it applied to.", &drained);
    let not_drain = "A body that is not a drain request.";
    let no_real = "No such real server in the configuration.";
    let not_vs = "A body that is not a virtual server.";
    let no_vs = "No such virtual server.";
    serde_json::json!({
        "openapi": "3.0.3",
        "info": {
            "title": "lbd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "lbd's HTTP API (lbd run --http [ADDRESS], 127.0.0.1:9467 by default). The same operations go over the control socket, one JSON object per line (lbctl)."
        },
        "paths": {
            "/status": {
                "get": {
                    "summary": "The state of everything lbd runs: data plane, virtual and real servers with their checks, VRRP instances, the reconciler, IPVS.",
                    "responses": { "200": { "description": "The status.", "content": json(&status) } }
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics: Prometheus' text format, or OpenMetrics when the Accept header asks for application/openmetrics-text.",
                    "responses": { "200": { "description": "The exposition.", "content": {
                        "text/plain; version=0.0.4": { "schema": { "type": "string" } },
                        "application/openmetrics-text; version=1.0.0": { "schema": { "type": "string" } }
                    } } }
                }
            },
            "/drain": post("Drain real servers: weight 0 in the data plane, no new connections, established ones kept.", &drain, applied, not_drain, no_real),
            "/undrain": post("Undo a drain.", &drain, applied, not_drain, no_real),
            "/disable": post("Take a virtual server out of service: its services leave IPVS and XDP; its checks keep running.", &virtual_server, ("Done.", &done), not_vs, no_vs),
            "/enable": post("Put a virtual server back in service.", &virtual_server, ("Done.", &done), not_vs, no_vs),
            "/reload": {
                "post": {
                    "summary": "Re-read the configuration file and apply only what changed (as SIGHUP); with dry_run, only say what would change.",
                    "requestBody": { "required": false, "content": json(&reload) },
                    "responses": {
                        "200": { "description": "What changed, or would.", "content": json(&reloaded) },
                        "400": { "description": "A body that is not a reload request.", "content": json(&error) },
                        "409": { "description": "The file is not valid: nothing changed, the running configuration stays.", "content": json(&error) }
                    }
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "responses": { "200": { "description": "OpenAPI 3.0.", "content": { "application/json": { "schema": { "type": "object" } } } } }
                }
            }
        },
        "components": { "schemas": schemas }
    })
}
