//! Frames for BPF_PROG_TEST_RUN fixtures: Ethernet (optionally VLAN-tagged), IPv4/IPv6,
//! TCP/UDP/ICMP, with correct lengths and IPv4 header checksums.

use std::net::{Ipv4Addr, Ipv6Addr};

/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;

const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// An Ethernet frame carrying `payload`; with `vlan`, one 802.1Q tag.
pub fn ethernet(ethertype: u16, vlan: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + payload.len());
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    if let Some(vid) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet (no options unless `options` is non-empty; `frag` is the flags/offset field).
pub fn ipv4(
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    options: &[u8],
    frag: u16,
    l4: &[u8],
) -> Vec<u8> {
    assert!(
        options.len().is_multiple_of(4) && options.len() <= 40,
        "IPv4 options come in 4-byte words, at most 40"
    );
    let hlen = 20 + options.len();
    let total = u16::try_from(hlen + l4.len()).expect("packet fits an IPv4 total length");
    let mut h = vec![0u8; hlen];
    h[0] = 0x40 | u8::try_from(hlen / 4).expect("IHL fits");
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h[20..].copy_from_slice(options);
    h.extend_from_slice(l4);
    refresh_ipv4_checksum(&mut h);
    h
}

/// Recomputes the header checksum of the IPv4 packet `p` after a test changed its header.
pub fn refresh_ipv4_checksum(p: &mut [u8]) {
    let hlen = usize::from(p[0] & 0x0f) * 4;
    p[10..12].fill(0);
    let sum = checksum(&p[..hlen]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// A VRRPv3 advert over IPv4 as a router sends it: TTL 255, to 224.0.0.18, emitted by lbd's own
/// codec (whose bytes are checked against keepalived's captures in its unit tests).
pub fn vrrp_v3_ipv4(
    src: Ipv4Addr,
    vrid: u8,
    priority: u8,
    advert_int_cs: u16,
    vips: &[Ipv4Addr],
) -> Vec<u8> {
    use lbd::vrrp::wire::{AdvertRepr, Auth, MULTICAST_V4, Packet, TTL, V3Ipv4Checksum, Version};
    let advert = AdvertRepr {
        version: Version::V3,
        vrid,
        priority,
        advert_int_cs,
        addresses: vips.iter().map(|a| (*a).into()).collect(),
        auth: Auth::None,
    };
    let mut vrrp = vec![0u8; advert.buffer_len()];
    advert.emit(
        &mut Packet::new_unchecked(&mut vrrp[..]),
        src.into(),
        MULTICAST_V4.into(),
        V3Ipv4Checksum::default(),
    );
    let mut p = ipv4(112, src, MULTICAST_V4, &[], 0, &vrrp);
    p[8] = TTL;
    refresh_ipv4_checksum(&mut p);
    p
}

/// An IPv6 packet.
pub fn ipv6(next: u8, src: Ipv6Addr, dst: Ipv6Addr, l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&u16::try_from(l4.len()).expect("payload fits").to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h.extend_from_slice(l4);
    h
}

/// A UDP datagram (checksum 0: optional over IPv4, and the program under test does not read it).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(
        &u16::try_from(8 + payload.len())
            .expect("datagram fits")
            .to_be_bytes(),
    );
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// TCP flag bits.
pub const TCP_SYN: u8 = 0x02;
/// TCP ACK flag.
pub const TCP_ACK: u8 = 0x10;

/// A 20-byte TCP header with `flags`.
pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&1u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t
}

/// An ICMP echo request.
pub fn icmp_echo() -> Vec<u8> {
    let mut i = vec![8u8, 0, 0, 0, 0, 1, 0, 1];
    let sum = checksum(&i);
    i[2..4].copy_from_slice(&sum.to_be_bytes());
    i
}

/// An ARP request frame (padded to the 60-byte Ethernet minimum).
pub fn arp_request() -> Vec<u8> {
    let mut a = vec![0u8, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&SRC_MAC);
    a.extend_from_slice(&[192, 0, 2, 1]);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&[192, 0, 2, 2]);
    a.resize(46, 0);
    ethernet(ETH_P_ARP, None, &a)
}

/// The Internet checksum of `bytes` (RFC 1071).
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    checksum(bytes)
}

/// The ICMPv6 checksum of `message` from `src` to `dst` (RFC 4443 §2.3: over the pseudo-header).
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let mut data = Vec::with_capacity(40 + message.len());
    data.extend_from_slice(&src.octets());
    data.extend_from_slice(&dst.octets());
    data.extend_from_slice(&u32::try_from(message.len()).expect("fits").to_be_bytes());
    data.extend_from_slice(&[0, 0, 0, 58]);
    data.extend_from_slice(message);
    checksum(&data)
}

/// Replaces the destination and source MACs of `frame`.
pub fn with_macs(mut frame: Vec<u8>, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    frame[..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    frame
}

/// The MACs every fixture frame is sent with (destination, source).
pub const FIXTURE_MACS: ([u8; 6], [u8; 6]) = (DST_MAC, SRC_MAC);
