//! VRRP's contact with the kernel: the interface (rtnetlink), the raw protocol-112 sockets,
//! virtual addresses (rtnetlink) and gratuitous ARP (AF_PACKET). Only the driver calls this.
//!
//! IPv4: one receive socket bound to the interface and joined to 224.0.0.18 (it also gets
//! unicast adverts), which returns the IP header so the codec checks the TTL; one send socket
//! bound to the primary address with TTL 255 and DSCP CS6 (0xc0), as keepalived sends.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
};

use futures_util::TryStreamExt as _;
use rtnetlink::{
    Handle,
    packet_route::{
        address::{AddressAttribute, AddressMessage},
        link::LinkAttribute,
    },
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::wire::{IPPROTO_VRRP, MULTICAST_V4, TTL};
use crate::model::VirtualAddress;

/// What failed, naming the operation.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// rtnetlink failed.
    #[error("{op}: {source}")]
    Netlink {
        /// Operation.
        op: String,
        /// Why.
        #[source]
        source: rtnetlink::Error,
    },
    /// A socket operation failed.
    #[error("{op}: {source}")]
    Socket {
        /// Operation.
        op: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The interface does not exist, or has no address to send from.
    #[error("{0}")]
    Interface(String),
}

fn socket_err(op: impl Into<String>) -> impl FnOnce(io::Error) -> IoError {
    let op = op.into();
    move |source| IoError::Socket { op, source }
}

/// An interface as VRRP needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Name.
    pub name: String,
    /// Index.
    pub index: u32,
    /// MAC address.
    pub mac: [u8; 6],
    /// Its first IPv4 address: the adverts' source unless `unicast_src_ip` says otherwise.
    pub primary_v4: Option<Ipv4Addr>,
}

/// Looks `name` up.
pub async fn link(handle: &Handle, name: &str) -> Result<Link, IoError> {
    let netlink = |op: &str| {
        let op = format!("{op} {name}");
        move |source| IoError::Netlink { op, source }
    };
    let message = handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
        .map_err(netlink("looking up interface"))?
        .ok_or_else(|| IoError::Interface(format!("no interface {name}")))?;
    let index = message.header.index;
    let mac = message
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            _ => None,
        })
        .ok_or_else(|| IoError::Interface(format!("{name} has no Ethernet address")))?;
    let mut addresses = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    let mut primary_v4 = None;
    while let Some(address) = addresses
        .try_next()
        .await
        .map_err(netlink("listing the addresses of"))?
    {
        let ip = address.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) => {
                Some(*ip)
            }
            _ => None,
        });
        if primary_v4.is_none() {
            primary_v4 = ip;
        }
    }
    Ok(Link {
        name: name.to_owned(),
        index,
        mac,
        primary_v4,
    })
}

/// Adds a virtual address to the interface; one already there is fine.
pub async fn add_address(handle: &Handle, index: u32, vip: VirtualAddress) -> Result<(), IoError> {
    match handle
        .address()
        .add(index, vip.addr, vip.prefix)
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(e)) if -e.raw_code() == libc::EEXIST => Ok(()),
        Err(source) => Err(IoError::Netlink {
            op: format!("adding {}/{}", vip.addr, vip.prefix),
            source,
        }),
    }
}

/// Removes a virtual address from the interface; one already gone is fine.
pub async fn remove_address(
    handle: &Handle,
    index: u32,
    vip: VirtualAddress,
) -> Result<(), IoError> {
    let mut message = AddressMessage::default();
    message.header.index = index;
    message.header.prefix_len = vip.prefix;
    message.header.family = if vip.addr.is_ipv4() {
        rtnetlink::packet_route::AddressFamily::Inet
    } else {
        rtnetlink::packet_route::AddressFamily::Inet6
    };
    message.attributes.push(AddressAttribute::Local(vip.addr));
    message.attributes.push(AddressAttribute::Address(vip.addr));
    match handle.address().del(message).execute().await {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(e))
            if matches!(-e.raw_code(), libc::EADDRNOTAVAIL | libc::ENOENT) =>
        {
            Ok(())
        }
        Err(source) => Err(IoError::Netlink {
            op: format!("removing {}/{}", vip.addr, vip.prefix),
            source,
        }),
    }
}

/// The IPv4 VRRP sockets of one interface.
#[derive(Debug)]
pub struct Sockets4 {
    /// Receives every VRRP datagram on the interface, IP header included.
    pub recv: AsyncFd<Socket>,
    send: Socket,
}

impl Sockets4 {
    /// Opens the sockets on `link`, sending from `source`.
    pub fn open(link: &Link, source: Ipv4Addr) -> Result<Self, IoError> {
        let raw = || {
            Socket::new(
                Domain::IPV4,
                Type::RAW,
                Some(Protocol::from(i32::from(IPPROTO_VRRP))),
            )
        };
        let recv = raw().map_err(socket_err("opening the VRRP receive socket"))?;
        recv.bind_device(Some(link.name.as_bytes()))
            .map_err(socket_err(format!("binding to {}", link.name)))?;
        recv.join_multicast_v4_n(
            &MULTICAST_V4,
            &socket2::InterfaceIndexOrAddress::Index(link.index),
        )
        .map_err(socket_err(format!(
            "joining {MULTICAST_V4} on {}",
            link.name
        )))?;
        // Bursts of adverts (many instances, small intervals) must not be dropped here.
        recv.set_recv_buffer_size(1 << 20)
            .map_err(socket_err("sizing the receive buffer"))?;
        recv.set_nonblocking(true)
            .map_err(socket_err("non-blocking receive socket"))?;
        let send = raw().map_err(socket_err("opening the VRRP send socket"))?;
        send.bind(&SocketAddr::V4(SocketAddrV4::new(source, 0)).into())
            .map_err(socket_err(format!("binding the send socket to {source}")))?;
        send.bind_device(Some(link.name.as_bytes()))
            .map_err(socket_err(format!("binding to {}", link.name)))?;
        send.set_multicast_if_v4(&source)
            .map_err(socket_err("IP_MULTICAST_IF"))?;
        send.set_multicast_ttl_v4(u32::from(TTL))
            .map_err(socket_err("IP_MULTICAST_TTL"))?;
        send.set_ttl_v4(u32::from(TTL))
            .map_err(socket_err("IP_TTL"))?;
        send.set_multicast_loop_v4(false)
            .map_err(socket_err("IP_MULTICAST_LOOP"))?;
        // DSCP CS6 (network control), as keepalived marks adverts.
        send.set_tos_v4(0xc0).map_err(socket_err("IP_TOS"))?;
        Ok(Self {
            recv: crate::sys::async_socket(recv).map_err(socket_err("registering with tokio"))?,
            send,
        })
    }

    /// Sends one VRRP message to `dst` (the group or a unicast peer).
    pub fn send(&self, message: &[u8], dst: Ipv4Addr) -> Result<(), IoError> {
        self.send
            .send_to(message, &SocketAddr::V4(SocketAddrV4::new(dst, 0)).into())
            .map(drop)
            .map_err(socket_err(format!("sending an advert to {dst}")))
    }
}

/// Sends gratuitous ARP: keepalived's request form (THA ff:ff:ff:ff:ff:ff, SPA = TPA = the VIP).
#[derive(Debug)]
pub struct Arp {
    socket: Socket,
    index: u32,
}

/// EtherType of ARP.
const ETH_P_ARP: u16 = 0x0806;

impl Arp {
    /// Opens an AF_PACKET socket for `link`.
    pub fn open(link: &Link) -> Result<Self, IoError> {
        let socket = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(i32::from(ETH_P_ARP.to_be()))),
        )
        .map_err(socket_err("opening the ARP socket"))?;
        Ok(Self {
            socket,
            index: link.index,
        })
    }

    /// One gratuitous ARP for `vip` from `mac`.
    pub fn announce(&self, mac: [u8; 6], vip: Ipv4Addr) -> Result<(), IoError> {
        let frame = garp_frame(mac, vip);
        let to = crate::sys::link_layer_addr(self.index, ETH_P_ARP, [0xff; 6])
            .map_err(socket_err("building the link-layer address"))?;
        self.socket
            .send_to(&frame, &to)
            .map(drop)
            .map_err(socket_err(format!("sending gratuitous ARP for {vip}")))
    }
}

/// The gratuitous ARP frame keepalived sends (../shared/fixtures/vrrp README §5).
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&vip.octets());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gratuitous_arp_matches_keepalived_s_frame() {
        // vrrpv2_ipv4.pcap frame 4 (tcpdump of keepalived 2.2.7), 42 bytes.
        #[rustfmt::skip]
        let captured = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x11, 0x08, 0x06, 0x00, 0x01,
            0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x11, 0xc0, 0x00, 0x02, 0x64,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0, 0x00, 0x02, 0x64,
        ];
        assert_eq!(
            garp_frame([2, 0, 0, 0, 0, 0x11], Ipv4Addr::new(192, 0, 2, 100)),
            captured
        );
    }
}
