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

use super::wire::{Envelope, IPPROTO_VRRP, MULTICAST_V4, MULTICAST_V6, TTL, split_ipv4};
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

/// Writes a sysctl (`/proc/sys/...`) and returns its old value.
fn sysctl(path: &str, value: &str) -> Result<String, IoError> {
    let full = format!("/proc/sys/{path}");
    let old = std::fs::read_to_string(&full).map_err(socket_err(format!("reading {full}")))?;
    std::fs::write(&full, value).map_err(socket_err(format!("writing {full}")))?;
    Ok(old.trim().to_owned())
}

/// A VMAC interface lbd made, and the base interface settings it changed.
#[derive(Debug)]
pub struct VmacLink {
    /// The macvlan.
    pub link: Link,
    /// (sysctl path, old value) of the base interface, restored by [`delete_vmac`].
    restore: Vec<(String, String)>,
}

/// Creates the VMAC interface `name` on `base` with `mac`, as keepalived sets it up: a macvlan
/// in private mode; on it arp_ignore 1, accept_local 1, rp_filter 0, promote_secondaries 1,
/// and for IPv6 no address of its own but the base interface's link-local (every router has the
/// same MAC, so an address made from it would clash); on the base interface arp_ignore 1 and
/// arp_filter 1, so only the VMAC answers ARP for the VIPs. A stale interface of that name
/// (from a crashed run) is replaced.
pub async fn create_vmac(
    handle: &Handle,
    base: &Link,
    name: &str,
    mac: [u8; 6],
) -> Result<VmacLink, IoError> {
    use rtnetlink::{LinkMacVlan, LinkUnspec, packet_route::link::MacVlanMode};
    let netlink = |op: String| move |source| IoError::Netlink { op, source };
    if let Ok(stale) = link(handle, name).await {
        handle
            .link()
            .del(stale.index)
            .execute()
            .await
            .map_err(netlink(format!("deleting the stale {name}")))?;
    }
    handle
        .link()
        .add(
            LinkMacVlan::new(name, base.index, MacVlanMode::Private)
                .address(mac.to_vec())
                .build(),
        )
        .execute()
        .await
        .map_err(netlink(format!(
            "creating the VMAC {name} on {}",
            base.name
        )))?;
    for (key, value) in [
        ("arp_ignore", "1"),
        ("accept_local", "1"),
        ("rp_filter", "0"),
        ("promote_secondaries", "1"),
    ] {
        sysctl(&format!("net/ipv4/conf/{name}/{key}"), value)?;
    }
    sysctl(&format!("net/ipv6/conf/{name}/addr_gen_mode"), "1")?;
    let mut restore = Vec::new();
    for (key, value) in [("arp_ignore", "1"), ("arp_filter", "1")] {
        let path = format!("net/ipv4/conf/{}/{key}", base.name);
        let old = sysctl(&path, value)?;
        restore.push((path, old));
    }
    let created = link(handle, name).await?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(created.index).up().build())
        .execute()
        .await
        .map_err(netlink(format!("setting {name} up")))?;
    if let Some(ll) = base.link_local_v6 {
        let mut address = VirtualAddress::new(ll.into(), 64);
        address.scope = Some(253);
        add_address(handle, created.index, &address).await?;
    }
    let mut created = link(handle, name).await?;
    created.link_local_v6 = base.link_local_v6;
    Ok(VmacLink {
        link: created,
        restore,
    })
}

/// Deletes a VMAC interface and restores the base interface's settings.
pub async fn delete_vmac(handle: &Handle, vmac: VmacLink) -> Result<(), IoError> {
    for (path, old) in &vmac.restore {
        sysctl(path, old)?;
    }
    handle
        .link()
        .del(vmac.link.index)
        .execute()
        .await
        .map_err(|source| IoError::Netlink {
            op: format!("deleting the VMAC {}", vmac.link.name),
            source,
        })
}

/// A VRRP receive socket on one interface (the instance's, or a VMAC): every VRRP datagram
/// that arrives on it, multicast or unicast, with what the codec needs to check it.
#[derive(Debug)]
pub struct Receiver {
    /// The socket, registered with tokio.
    pub fd: AsyncFd<Socket>,
    v6: bool,
}

/// One datagram as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Source, destination and TTL / hop limit.
    pub envelope: Envelope,
    /// Where the VRRP message is in the buffer.
    pub message: std::ops::Range<usize>,
}

fn raw_socket(v6: bool) -> io::Result<Socket> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    Socket::new(
        domain,
        Type::RAW,
        Some(Protocol::from(i32::from(IPPROTO_VRRP))),
    )
}

impl Receiver {
    /// Whether it receives IPv6 adverts.
    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// Opens the receive socket of `family` (IPv6 when `v6`) on `link`, joined to the VRRP group.
    pub fn open(link: &Link, v6: bool) -> Result<Self, IoError> {
        let socket = raw_socket(v6).map_err(socket_err("opening a VRRP receive socket"))?;
        socket
            .bind_device(Some(link.name.as_bytes()))
            .map_err(socket_err(format!("binding to {}", link.name)))?;
        if v6 {
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
        } else {
            socket
                .join_multicast_v4_n(
                    &MULTICAST_V4,
                    &socket2::InterfaceIndexOrAddress::Index(link.index),
                )
                .map_err(socket_err(format!(
                    "joining {MULTICAST_V4} on {}",
                    link.name
                )))?;
        }
        // Bursts of adverts (many instances, small intervals) must not be dropped here.
        socket
            .set_recv_buffer_size(1 << 20)
            .map_err(socket_err("sizing the receive buffer"))?;
        socket
            .set_nonblocking(true)
            .map_err(socket_err("non-blocking receive socket"))?;
        Ok(Self {
            fd: crate::sys::async_socket(socket).map_err(socket_err("registering with tokio"))?,
            v6,
        })
    }

    /// Receives one datagram without blocking (`WouldBlock` when none is queued). IPv4 comes
    /// with its header, which [`split_ipv4`] checks (a malformed one is `InvalidData`); a raw
    /// IPv6 socket never returns the header: hop limit and destination come as ancillary data.
    pub fn recv(&self, buffer: &mut [u8]) -> io::Result<Received> {
        if !self.v6 {
            let len = io::Read::read(&mut self.fd.get_ref(), buffer)?;
            let (ip, message) = split_ipv4(&buffer[..len])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let start = message.as_ptr() as usize - buffer.as_ptr() as usize;
            return Ok(Received {
                envelope: Envelope {
                    src: ip.src.into(),
                    dst: ip.dst.into(),
                    ttl: ip.ttl,
                },
                message: start..start + message.len(),
            });
        }
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn6, recvmsg};
        let mut control = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
        let mut iov = [io::IoSliceMut::new(buffer)];
        let message = recvmsg::<SockaddrIn6>(
            self.fd.get_ref().as_raw_fd(),
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
            (Some(dst), Some(ttl)) => Ok(Received {
                envelope: Envelope {
                    src: src.into(),
                    dst: dst.into(),
                    ttl,
                },
                message: 0..message.bytes,
            }),
            _ => Err(io::Error::other(
                "IPv6 datagram without its destination or hop limit",
            )),
        }
    }
}

/// A VRRP send socket: from one source address, out of one interface (the instance's, or its
/// VMAC so that adverts carry the virtual MAC), TTL / hop limit 255, DSCP CS6 as keepalived
/// marks adverts.
#[derive(Debug)]
pub struct Sender {
    socket: Socket,
    index: u32,
}

impl Sender {
    /// Opens a sender on `link` from `source`.
    pub fn open(link: &Link, source: IpAddr) -> Result<Self, IoError> {
        let socket =
            raw_socket(source.is_ipv6()).map_err(socket_err("opening a VRRP send socket"))?;
        // A raw socket gets a copy of every VRRP datagram: this one never reads, so a classic
        // BPF `ret #0` (BPF_RET|BPF_K) keeps none.
        socket
            .attach_filter(&[socket2::SockFilter::new(0x06, 0, 0, 0)])
            .map_err(socket_err("SO_ATTACH_FILTER"))?;
        let scope = match source {
            IpAddr::V6(a) if a.is_unicast_link_local() => link.index,
            _ => 0,
        };
        let bind: SocketAddr = match source {
            IpAddr::V4(a) => SocketAddrV4::new(a, 0).into(),
            IpAddr::V6(a) => SocketAddrV6::new(a, 0, 0, scope).into(),
        };
        socket
            .bind(&bind.into())
            .map_err(socket_err(format!("binding a send socket to {source}")))?;
        socket
            .bind_device(Some(link.name.as_bytes()))
            .map_err(socket_err(format!("binding to {}", link.name)))?;
        match source {
            IpAddr::V4(_) => {
                // SO_BINDTODEVICE picks the interface for multicast too (it wins over
                // IP_MULTICAST_IF), also when the source address is another interface's (VMAC).
                socket
                    .set_multicast_ttl_v4(u32::from(TTL))
                    .map_err(socket_err("IP_MULTICAST_TTL"))?;
                socket
                    .set_ttl_v4(u32::from(TTL))
                    .map_err(socket_err("IP_TTL"))?;
                socket
                    .set_multicast_loop_v4(false)
                    .map_err(socket_err("IP_MULTICAST_LOOP"))?;
                socket.set_tos_v4(0xc0).map_err(socket_err("IP_TOS"))?;
            }
            IpAddr::V6(_) => {
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
            }
        }
        Ok(Self {
            socket,
            index: link.index,
        })
    }

    /// Sends one VRRP message to `dst` (the group or a unicast peer).
    pub fn send(&self, message: &[u8], dst: IpAddr) -> Result<(), IoError> {
        let to: SocketAddr = match dst {
            IpAddr::V4(a) => SocketAddrV4::new(a, 0).into(),
            IpAddr::V6(a) => SocketAddrV6::new(a, 0, 0, self.index).into(),
        };
        self.socket
            .send_to(message, &to.into())
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
