//! Next hops of real servers from the kernel: its route to each (RTM_GETROUTE), the egress
//! interface's MAC and the neighbour table's entry for the real server or its gateway.
//!
//! An address with no usable neighbour entry yet is nudged: one UDP datagram to its discard
//! port makes the kernel resolve it (ARP or neighbour solicitation), and the XDP backend asks
//! again at the next resync.

use std::net::{IpAddr, SocketAddr};

use futures_util::TryStreamExt as _;
use rtnetlink::{
    Handle, RouteMessageBuilder,
    packet_route::{
        link::LinkAttribute,
        neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
        route::{RouteAddress, RouteAttribute},
    },
};

use crate::reconcile::xdp::{NextHop, NextHops};

/// Resolves next hops through rtnetlink.
#[derive(Clone, Debug)]
pub struct KernelNextHops {
    handle: Handle,
    /// The neighbour table as last read, and when: a resync that re-resolves every real server
    /// reads it once, not once per real server.
    neighbours: Option<(tokio::time::Instant, Vec<Neighbour>)>,
}

/// A usable neighbour entry: interface, address, MAC.
type Neighbour = (u32, IpAddr, [u8; 6]);

/// How long a read of the neighbour table answers lookups.
const NEIGHBOURS_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

impl KernelNextHops {
    /// Opens an rtnetlink connection (its task runs on the current tokio runtime).
    pub fn connect() -> std::io::Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Self {
            handle,
            neighbours: None,
        })
    }

    async fn route(&self, addr: IpAddr) -> Result<(u32, IpAddr), String> {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        let message = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(addr, prefix)
            .map_err(|e| e.to_string())?
            .build();
        let route = self
            .handle
            .route()
            .get(message)
            .execute()
            .try_next()
            .await
            .map_err(|e| format!("route lookup: {e}"))?
            .ok_or_else(|| "no route".to_owned())?;
        let mut oif = None;
        let mut gateway = None;
        for attr in &route.attributes {
            match attr {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(IpAddr::V4(*g)),
                RouteAttribute::Gateway(RouteAddress::Inet6(g)) => gateway = Some(IpAddr::V6(*g)),
                _ => {}
            }
        }
        let oif = oif.ok_or_else(|| "the route has no output interface".to_owned())?;
        Ok((oif, gateway.unwrap_or(addr)))
    }

    async fn link_mac(&self, ifindex: u32) -> Result<[u8; 6], String> {
        let link = self
            .handle
            .link()
            .get()
            .match_index(ifindex)
            .execute()
            .try_next()
            .await
            .map_err(|e| format!("interface {ifindex}: {e}"))?
            .ok_or_else(|| format!("no interface {ifindex}"))?;
        link.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(b) => <[u8; 6]>::try_from(b.as_slice()).ok(),
                _ => None,
            })
            .ok_or_else(|| format!("interface {ifindex} has no Ethernet address"))
    }

    /// The MAC of `addr` on `ifindex`, from the table read within [`NEIGHBOURS_FRESH`] unless
    /// `fresh` asks for a new read.
    async fn neighbour(
        &mut self,
        ifindex: u32,
        addr: IpAddr,
        fresh: bool,
    ) -> Result<Option<[u8; 6]>, String> {
        let stale = self
            .neighbours
            .as_ref()
            .is_none_or(|(read, _)| read.elapsed() > NEIGHBOURS_FRESH);
        if fresh || stale {
            self.neighbours = Some((tokio::time::Instant::now(), self.read_neighbours().await?));
        }
        Ok(self.neighbours.as_ref().and_then(|(_, table)| {
            table
                .iter()
                .find(|(i, a, _)| *i == ifindex && *a == addr)
                .map(|(_, _, mac)| *mac)
        }))
    }

    /// Every usable entry of the neighbour table.
    async fn read_neighbours(&self) -> Result<Vec<Neighbour>, String> {
        let mut found = Vec::new();
        let mut entries = self.handle.neighbours().get().execute();
        while let Some(entry) = entries
            .try_next()
            .await
            .map_err(|e| format!("neighbour table: {e}"))?
        {
            if matches!(
                entry.header.state,
                NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
            ) {
                continue;
            }
            let mut dest = None;
            let mut mac = None;
            for attr in &entry.attributes {
                match attr {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                        dest = Some(IpAddr::V4(*a));
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                        dest = Some(IpAddr::V6(*a));
                    }
                    NeighbourAttribute::LinkLayerAddress(b) => {
                        mac = <[u8; 6]>::try_from(b.as_slice()).ok();
                    }
                    _ => {}
                }
            }
            if let (Some(dest), Some(mac)) = (dest, mac) {
                found.push((entry.header.ifindex, dest, mac));
            }
        }
        Ok(found)
    }
}

impl NextHops for KernelNextHops {
    async fn resolve(&mut self, addr: IpAddr) -> Result<Option<NextHop>, String> {
        let (ifindex, hop) = self.route(addr).await?;
        let src_mac = self.link_mac(ifindex).await?;
        let mut nudged = false;
        for poll in 0..RESOLVE_POLLS {
            // The first look may use a recent read of the table; the polls after a nudge read
            // it again.
            if let Some(mac) = self.neighbour(ifindex, hop, poll > 0).await? {
                return Ok(Some(NextHop {
                    ifindex,
                    mac,
                    src_mac,
                    on_link: hop == addr,
                }));
            }
            if !nudged {
                nudge(hop);
                nudged = true;
            }
            tokio::time::sleep(RESOLVE_POLL_INTERVAL).await;
        }
        // Asked again at the next resync.
        Ok(None)
    }
}

/// How long a first resolution is waited for: most answer within a millisecond on a LAN.
const RESOLVE_POLLS: usize = 10;
const RESOLVE_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Makes the kernel resolve `hop`'s MAC: one empty datagram to its discard port.
fn nudge(hop: IpAddr) {
    let bind: SocketAddr = if hop.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    if let Ok(socket) = std::net::UdpSocket::bind(bind) {
        // A failure only delays resolution to the next try.
        let _sent = socket.send_to(b"", SocketAddr::new(hop, 9));
    }
}

/// The first IPv4 address and the first global IPv6 address of interface `name`.
pub fn interface_addresses(
    name: &str,
) -> std::io::Result<(Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>)> {
    let mut v4 = None;
    let mut v6 = None;
    for ifa in nix::ifaddrs::getifaddrs()? {
        if ifa.interface_name != name {
            continue;
        }
        let Some(addr) = ifa.address else { continue };
        if let Some(sin) = addr.as_sockaddr_in() {
            v4.get_or_insert(sin.ip());
        } else if let Some(sin6) = addr.as_sockaddr_in6()
            && !sin6.ip().is_unicast_link_local()
        {
            v6.get_or_insert(sin6.ip());
        }
    }
    Ok((v4, v6))
}
