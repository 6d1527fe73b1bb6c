//! PING_CHECK: ICMP echo over one raw socket per family (and per source options), shared by
//! every target: a reader task matches echo replies to waiting probes by (address, sequence).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, Ordering},
    },
    time::Duration,
};

use socket2::{Protocol, Type};
use tokio::{net::UdpSocket, sync::oneshot};

use super::io_detail;
use crate::{health::state::Outcome, model::Target};

/// What makes two pings able to share a socket.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    v6: bool,
    bind_addr: Option<IpAddr>,
    bind_if: Option<String>,
    fwmark: Option<u32>,
}

/// The shared sockets' receive buffer.
const RCVBUF: usize = 4 << 20;

type Waiters = Mutex<HashMap<(IpAddr, u16), oneshot::Sender<()>>>;

#[derive(Debug)]
struct Pinger {
    // A raw ICMP socket: tokio's UDP type is only the fd's async wrapper (sendto/recvfrom).
    socket: Arc<UdpSocket>,
    ident: u16,
    seq: AtomicU16,
    waiters: Arc<Waiters>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Pinger {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The shared ICMP sockets.
#[derive(Debug, Default)]
pub(super) struct Pingers {
    map: Mutex<HashMap<Key, Arc<Pinger>>>,
}

/// The Internet checksum of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request; the kernel fills in the ICMPv6 checksum itself.
fn echo_request(v6: bool, ident: u16, seq: u16) -> Vec<u8> {
    let mut packet = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(b"lbd PING_CHECK..");
    if !v6 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The (ident, sequence) of an echo reply; IPv4 raw sockets deliver the IP header too.
fn echo_reply(v6: bool, packet: &[u8]) -> Option<(u16, u16)> {
    let icmp = if v6 {
        packet
    } else {
        let ihl = usize::from(packet.first()? & 0x0f) * 4;
        packet.get(ihl..)?
    };
    let want = if v6 { 129 } else { 0 };
    if icmp.len() < 8 || icmp[0] != want || icmp[1] != 0 {
        return None;
    }
    Some((
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    ))
}

impl Pingers {
    fn get(&self, target: &Target) -> std::io::Result<Arc<Pinger>> {
        let key = Key {
            v6: target.addr.is_ipv6(),
            bind_addr: target.bind_addr,
            bind_if: target.bind_if.clone(),
            fwmark: target.fwmark,
        };
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = map.get(&key) {
            return Ok(p.clone());
        }
        let protocol = if key.v6 {
            Protocol::ICMPV6
        } else {
            Protocol::ICMPV4
        };
        let mut source = target.clone();
        source.bind_port = None;
        let raw = super::socket(&source, Type::RAW, Some(protocol))?;
        // Every ICMP packet of the namespace reaches a raw socket: room for bursts of replies.
        nix::sys::socket::setsockopt(&raw, nix::sys::socket::sockopt::RcvBufForce, &RCVBUF)
            .map_err(std::io::Error::from)?;
        let socket = Arc::new(UdpSocket::from_std(raw.into())?);
        let waiters: Arc<Waiters> = Arc::default();
        let ident = (std::process::id() & 0xffff) as u16;
        let reader = tokio::spawn(read_replies(socket.clone(), waiters.clone(), key.v6, ident));
        let pinger = Arc::new(Pinger {
            socket,
            ident,
            seq: AtomicU16::new(0),
            waiters,
            reader,
        });
        map.insert(key, pinger.clone());
        Ok(pinger)
    }

    pub(super) async fn ping(&self, target: &Target, timeout: Duration) -> Outcome {
        let pinger = match self.get(target) {
            Ok(p) => p,
            Err(e) => return Outcome::down(io_detail("ICMP socket", &e)),
        };
        let ip = target.addr.ip();
        let seq = pinger.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let lock = || {
            pinger
                .waiters
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        lock().insert((ip, seq), tx);
        let packet = echo_request(ip.is_ipv6(), pinger.ident, seq);
        let outcome = match pinger.socket.send_to(&packet, SocketAddr::new(ip, 0)).await {
            Err(e) => Outcome::down(io_detail("send", &e)),
            Ok(_) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(())) => Outcome::up("echo reply"),
                _ => Outcome::down(format!("no echo reply within {timeout:?}")),
            },
        };
        lock().remove(&(ip, seq));
        outcome
    }
}

async fn read_replies(socket: Arc<UdpSocket>, waiters: Arc<Waiters>, v6: bool, ident: u16) {
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Some((id, seq)) = echo_reply(v6, &buf[..n]) else {
            continue;
        };
        if id != ident {
            continue;
        }
        let waiter = waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(from.ip(), seq));
        if let Some(tx) = waiter {
            let _ = tx.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_carry_a_valid_checksum_and_replies_are_recognised() {
        let req = echo_request(false, 0x1234, 7);
        assert_eq!(checksum(&req), 0, "a packet with its checksum sums to zero");
        let mut reply = vec![0x45; 20];
        reply.extend_from_slice(&req);
        reply[20] = 0;
        assert_eq!(echo_reply(false, &reply), Some((0x1234, 7)));
        assert_eq!(echo_reply(false, &reply[..24]), None, "truncated");
        let mut v6 = echo_request(true, 9, 3);
        assert_eq!(echo_reply(true, &v6), None, "a request is no reply");
        v6[0] = 129;
        assert_eq!(echo_reply(true, &v6), Some((9, 3)));
    }
}
