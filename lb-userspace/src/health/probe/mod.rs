//! The probes: one async function per keepalived checker, each bounded by the checker's
//! timeout as a whole (a slow or hostile server cannot hold a probe longer), each returning an
//! [`Outcome`] and never panicking on what a server sends. These are the only health modules
//! that touch sockets and processes.

mod dns;
mod http;
mod ping;
mod smtp;
mod udp;

pub use http::MAX_BODY;
pub use smtp::{MAX_REPLY, SmtpError, SmtpReply, parse_reply};

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use socket2::{Domain, SockRef, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

use super::state::{Outcome, WeightChange};
use crate::{
    model::{FileProbe, MiscProbe, Probe, ProbeKind, ScriptUser, Target, TlsProbe},
    scripts::Identity,
};

/// What probes share: the ICMP sockets, TLS configurations, the default script user.
#[derive(Debug, Default)]
pub struct ProbeContext {
    pinger: ping::Pingers,
    tls: Mutex<HashMap<TlsProbe, Arc<rustls::ClientConfig>>>,
    /// Who MISC_CHECK programs run as unless they say otherwise.
    pub script_user: Option<ScriptUser>,
}

impl ProbeContext {
    /// A context whose MISC_CHECKs run as `script_user` by default.
    pub fn new(script_user: Option<ScriptUser>) -> Self {
        Self {
            script_user,
            ..Self::default()
        }
    }

    fn tls_config(&self, tls: &TlsProbe) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut cache = self
            .tls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(config) = cache.get(tls) {
            return Ok(config.clone());
        }
        let config = Arc::new(http::tls_config(tls)?);
        cache.insert(tls.clone(), config.clone());
        Ok(config)
    }
}

/// Runs `probe` once, within `timeout`.
pub async fn run(probe: &Probe, timeout: Duration, ctx: &ProbeContext) -> Outcome {
    let work = async {
        match &probe.kind {
            ProbeKind::Tcp => tcp(&probe.target).await,
            ProbeKind::Http(h) => http::check(&probe.target, h, ctx).await,
            ProbeKind::Smtp { helo_name } => smtp::check(&probe.target, helo_name.as_deref()).await,
            ProbeKind::Dns { record_type, name } => {
                dns::check(&probe.target, record_type, name, timeout).await
            }
            ProbeKind::Udp(u) => udp::check(&probe.target, u, timeout).await,
            ProbeKind::Ping => ctx.pinger.ping(&probe.target, timeout).await,
            ProbeKind::Misc(m) => misc(m, timeout, ctx).await,
            ProbeKind::File(f) => file(f),
        }
    };
    // MISC_CHECK and UDP/DNS handle their own time limit (a timeout can be a verdict).
    match &probe.kind {
        ProbeKind::Misc(_) | ProbeKind::Udp(_) | ProbeKind::Dns { .. } | ProbeKind::File(_) => {
            work.await
        }
        _ => tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| Outcome::down(format!("no answer within {timeout:?}"))),
    }
}

/// A socket for `target`: non-blocking, with its source address, port, interface and mark.
fn socket(
    target: &Target,
    ty: Type,
    protocol: Option<socket2::Protocol>,
) -> std::io::Result<Socket> {
    let domain = Domain::for_address(target.addr);
    let socket = Socket::new(domain, ty.nonblocking().cloexec(), protocol)?;
    apply_source(&socket, target)?;
    Ok(socket)
}

fn apply_source(socket: &Socket, target: &Target) -> std::io::Result<()> {
    if let Some(mark) = target.fwmark {
        socket.set_mark(mark)?;
    }
    if let Some(dev) = &target.bind_if {
        socket.bind_device(Some(dev.as_bytes()))?;
    }
    if target.bind_addr.is_some() || target.bind_port.is_some() {
        let ip = target.bind_addr.unwrap_or(match target.addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
        });
        if target.bind_port.is_some() {
            socket.set_reuse_address(true)?;
        }
        socket.bind(&SocketAddr::new(ip, target.bind_port.unwrap_or(0)).into())?;
    }
    Ok(())
}

/// A UDP socket connected to `target` that has sent `datagram`.
async fn udp_sent(target: &Target, datagram: &[u8]) -> Result<tokio::net::UdpSocket, String> {
    let socket = socket(target, Type::DGRAM, None)
        .and_then(|s| tokio::net::UdpSocket::from_std(s.into()))
        .map_err(|e| io_detail("socket", &e))?;
    socket
        .connect(target.addr)
        .await
        .map_err(|e| io_detail("connect", &e))?;
    socket
        .send(datagram)
        .await
        .map_err(|e| io_detail("send", &e))?;
    Ok(socket)
}

/// Connects a TCP stream to `target`.
async fn connect(target: &Target) -> std::io::Result<TcpStream> {
    let socket = socket(target, Type::STREAM, None)?;
    TcpSocket::from_std_stream(std::net::TcpStream::from(socket))
        .connect(target.addr)
        .await
}

/// Closes with a reset: a health check leaves no TIME_WAIT behind on the director (10,000
/// checks a second would otherwise keep hundreds of thousands of them).
fn close_with_reset(stream: TcpStream) {
    // Best effort: without it the socket merely lingers in TIME_WAIT.
    drop(SockRef::from(&stream).set_linger(Some(Duration::ZERO)));
    drop(stream);
}

fn io_detail(what: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => format!("{what}: connection refused"),
        _ => format!("{what}: {e}"),
    }
}

/// TCP_CHECK: the server accepts a connection.
async fn tcp(target: &Target) -> Outcome {
    match connect(target).await {
        Ok(stream) => {
            close_with_reset(stream);
            Outcome::up("connected")
        }
        Err(e) => Outcome::down(io_detail("connect", &e)),
    }
}

/// MISC_CHECK: exit 0 is up, 1 down; with `misc_dynamic` 2-255 is up with weight code - 2.
async fn misc(m: &MiscProbe, timeout: Duration, ctx: &ProbeContext) -> Outcome {
    let identity = match Identity::resolve(m.script.user.as_ref().or(ctx.script_user.as_ref())) {
        Ok(i) => i,
        Err(e) => return Outcome::down(format!("not run: {e}")),
    };
    match crate::scripts::exit_status(&m.script.argv, identity, timeout).await {
        Ok(Some(0)) => Outcome::up("exit 0"),
        Ok(Some(code)) if m.dynamic && (2..=255).contains(&code) => Outcome {
            ok: true,
            weight: Some(WeightChange::Set(code as u32 - 2)),
            detail: format!("exit {code}"),
        },
        Ok(Some(code)) => Outcome::down(format!("exit {code}")),
        Ok(None) => Outcome::down("killed by a signal"),
        Err(e) => Outcome::down(e),
    }
}

/// FILE_CHECK: the file's number times the weight; with weight 0 any non-zero value is down,
/// otherwise a product at or below -254 is down (keepalived's tracked-file rule). `dynamic`
/// adds the product to the real server's weight.
fn file(f: &FileProbe) -> Outcome {
    let value = crate::vrrp::tracker::read_value(&f.path);
    let sign = if f.reverse { -1 } else { 1 };
    let product = value * i64::from(f.weight) * sign;
    let ok = if f.weight == 0 {
        value == 0
    } else {
        product > -254
    };
    Outcome {
        ok,
        weight: (ok && f.dynamic && f.weight != 0).then_some(WeightChange::Add(product)),
        detail: format!("value {value}"),
    }
}
