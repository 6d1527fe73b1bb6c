//! VRRP's contact with the kernel: the interface (rtnetlink), the raw protocol-112 sockets,
//! virtual addresses (rtnetlink) and gratuitous ARP / unsolicited NA (AF_PACKET). Only the
//! driver calls this.
//!
//! IPv4: one receive socket bound to the interface and joined to 224.0.0.18 (it also gets
//! unicast adverts), which returns the IP header so the codec checks the TTL; one send socket
//! bound to the primary address with TTL 255 and DSCP CS6 (0xc0), as keepalived sends.
//! IPv6: one socket, bound to the interface's link-local address (RFC 9568 §5.1.2.1) and joined
//! to ff02::12, hop limit 255 and traffic class CS6 on send; the hop limit and destination of
//! each received advert come back as ancillary data (IPV6_HOPLIMIT, IPV6_PKTINFO), since a raw
//! IPv6 socket never returns the IPv6 header.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::AsRawFd as _,
};

use futures_util::TryStreamExt as _;
use rtnetlink::{
    Handle,
    packet_route::{
        address::{AddressAttribute, AddressMessage},
        link::{LinkAttribute, LinkFlags},
    },
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::wire::{IPPROTO_VRRP, MULTICAST_V4, MULTICAST_V6, TTL};
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
    /// Its link-local IPv6 address: the source of IPv6 adverts.
    pub link_local_v6: Option<Ipv6Addr>,
    /// Administratively up with a carrier (IFF_UP and IFF_RUNNING).
    pub up: bool,
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
    let up = message.header.flags.contains(LinkFlags::Up)
        && message.header.flags.contains(LinkFlags::Running);
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
    let mut link_local_v6 = None;
    while let Some(address) = addresses
        .try_next()
        .await
        .map_err(netlink("listing the addresses of"))?
    {
        for attribute in &address.attributes {
            match attribute {
                AddressAttribute::Local(IpAddr::V4(ip))
                | AddressAttribute::Address(IpAddr::V4(ip)) => {
                    primary_v4.get_or_insert(*ip);
                }
                AddressAttribute::Address(IpAddr::V6(ip)) if ip.is_unicast_link_local() => {
                    link_local_v6.get_or_insert(*ip);
                }
                _ => {}
            }
        }
    }
    Ok(Link {
        name: name.to_owned(),
        index,
        mac,
        primary_v4,
        link_local_v6,
        up,
    })
}

/// Adds a virtual address to the interface (IPv6 without duplicate address detection, see
/// [`crate::model::VirtualAddress`]); one already there is fine.
pub async fn add_address(handle: &Handle, index: u32, vip: &VirtualAddress) -> Result<(), IoError> {
    use rtnetlink::packet_route::address::{AddressFlags, AddressHeaderFlags, AddressScope};
    let mut request = handle.address().add(index, vip.addr, vip.prefix);
    let message = request.message_mut();
    if vip.addr.is_ipv6() {
        message.header.flags |= AddressHeaderFlags::Nodad;
        message
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    if let Some(scope) = vip.scope {
        message.header.scope = AddressScope::from(scope);
    }
    if let Some(label) = &vip.label {
        message
            .attributes
            .push(AddressAttribute::Label(label.clone()));
    }
    if let Some(broadcast) = vip.broadcast {
        message
            .attributes
            .push(AddressAttribute::Broadcast(broadcast));
    }
    match request.execute().await {
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
    vip: &VirtualAddress,
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

/// The IPv6 VRRP socket of one interface.
#[derive(Debug)]
pub struct Sockets6 {
    /// Receives every VRRP datagram on the interface and sends adverts.
    pub socket: AsyncFd<Socket>,
    index: u32,
}

/// An IPv6 datagram as received: its addresses, hop limit and length in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received6 {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address (ff02::12 or ours).
    pub dst: Ipv6Addr,
    /// Hop limit as received.
    pub hop_limit: u8,
    /// Bytes of VRRP message in the buffer.
    pub len: usize,
}

impl Sockets6 {
    /// Opens the socket on `link`, sending from `source`.
    pub fn open(link: &Link, source: Ipv6Addr) -> Result<Self, IoError> {
        let socket = Socket::new(
            Domain::IPV6,
            Type::RAW,
            Some(Protocol::from(i32::from(IPPROTO_VRRP))),
        )
        .map_err(socket_err("opening the IPv6 VRRP socket"))?;
        socket
            .bind_device(Some(link.name.as_bytes()))
            .map_err(socket_err(format!("binding to {}", link.name)))?;
        let scope = if source.is_unicast_link_local() {
            link.index
        } else {
            0
        };
        socket
            .bind(&SocketAddr::V6(SocketAddrV6::new(source, 0, 0, scope)).into())
            .map_err(socket_err(format!("binding to {source}")))?;
        socket
            .join_multicast_v6(&MULTICAST_V6, link.index)
            .map_err(socket_err(format!(
                "joining {MULTICAST_V6} on {}",
                link.name
            )))?;
        socket
            .set_recv_hoplimit_v6(true)
            .map_err(socket_err("IPV6_RECVHOPLIMIT"))?;
        nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::Ipv6RecvPacketInfo,
            &true,
        )
        .map_err(|e| IoError::Socket {
            op: "IPV6_RECVPKTINFO".to_owned(),
            source: e.into(),
        })?;
        socket
            .set_recv_buffer_size(1 << 20)
            .map_err(socket_err("sizing the receive buffer"))?;
        socket
            .set_multicast_if_v6(link.index)
            .map_err(socket_err("IPV6_MULTICAST_IF"))?;
        socket
            .set_multicast_hops_v6(u32::from(TTL))
            .map_err(socket_err("IPV6_MULTICAST_HOPS"))?;
        socket
            .set_unicast_hops_v6(u32::from(TTL))
            .map_err(socket_err("IPV6_UNICAST_HOPS"))?;
        socket
            .set_multicast_loop_v6(false)
            .map_err(socket_err("IPV6_MULTICAST_LOOP"))?;
        socket
            .set_tclass_v6(0xc0)
            .map_err(socket_err("IPV6_TCLASS"))?;
        socket
            .set_nonblocking(true)
            .map_err(socket_err("non-blocking IPv6 socket"))?;
        Ok(Self {
            socket: crate::sys::async_socket(socket)
                .map_err(socket_err("registering with tokio"))?,
            index: link.index,
        })
    }

    /// Receives one datagram without blocking (`WouldBlock` when none is queued).
    pub fn recv(&self, buffer: &mut [u8]) -> io::Result<Received6> {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn6, recvmsg};
        let mut control = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
        let mut iov = [io::IoSliceMut::new(buffer)];
        let message = recvmsg::<SockaddrIn6>(
            self.socket.get_ref().as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::MSG_DONTWAIT,
        )?;
        let src = message
            .address
            .map(|a| a.ip())
            .ok_or_else(|| io::Error::other("IPv6 datagram without a source address"))?;
        let (mut dst, mut hop_limit) = (None, None);
        for cmsg in message.cmsgs()? {
            match cmsg {
                ControlMessageOwned::Ipv6PacketInfo(info) => {
                    dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
                }
                ControlMessageOwned::Ipv6HopLimit(limit) => hop_limit = u8::try_from(limit).ok(),
                _ => {}
            }
        }
        match (dst, hop_limit) {
            (Some(dst), Some(hop_limit)) => Ok(Received6 {
                src,
                dst,
                hop_limit,
                len: message.bytes,
            }),
            _ => Err(io::Error::other(
                "IPv6 datagram without its destination or hop limit",
            )),
        }
    }

    /// Sends one VRRP message to `dst` (the group or a unicast peer) on the interface.
    pub fn send(&self, message: &[u8], dst: Ipv6Addr) -> Result<(), IoError> {
        self.socket
            .get_ref()
            .send_to(
                message,
                &SocketAddr::V6(SocketAddrV6::new(dst, 0, 0, self.index)).into(),
            )
            .map(drop)
            .map_err(socket_err(format!("sending an advert to {dst}")))
    }
}

/// Sends gratuitous ARP and unsolicited NA frames ([`super::announce`]) on any interface.
#[derive(Debug)]
pub struct Announcer {
    socket: Socket,
}

impl Announcer {
    /// Opens a send-only AF_PACKET socket (protocol 0: it receives nothing).
    pub fn open() -> Result<Self, IoError> {
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)
            .map_err(socket_err("opening the AF_PACKET socket"))?;
        Ok(Self { socket })
    }

    /// One gratuitous ARP (IPv4) or unsolicited NA (IPv6) for `vip` on `link`, from its MAC.
    pub fn announce(&self, link: &Link, vip: IpAddr) -> Result<(), IoError> {
        let (ethertype, dest, frame) = super::announce::frame(link.mac, vip);
        let to = crate::sys::link_layer_addr(link.index, ethertype, dest)
            .map_err(socket_err("building the link-layer address"))?;
        self.socket
            .send_to(&frame, &to)
            .map(drop)
            .map_err(socket_err(format!("announcing {vip}")))
    }
}
