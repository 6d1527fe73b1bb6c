//! The frames a new active router sends so that neighbours move the virtual addresses to it:
//! gratuitous ARP (IPv4) and unsolicited Neighbor Advertisement (IPv6), byte for byte as
//! keepalived sends them (../shared/fixtures/vrrp README §5 and §6). Pure: addresses in, an
//! Ethernet frame out; the driver sends it on an AF_PACKET socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::wire::checksum_v6;

/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// IPv6 next header of ICMPv6.
const IPPROTO_ICMPV6: u8 = 58;
/// ICMPv6 type of a Neighbor Advertisement (RFC 4861 §4.4).
const ND_NEIGHBOR_ADVERT: u8 = 136;
/// The NA's Override flag: neighbours replace the cached link-layer address.
const ND_NA_FLAG_OVERRIDE: u8 = 0x20;

/// The VRRP virtual MAC of `vrid` (RFC 5798 §7.3): 00:00:5e:00:01:VRID for IPv4,
/// 00:00:5e:00:02:VRID for IPv6.
pub fn virtual_mac(vrid: u8, v6: bool) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, if v6 { 0x02 } else { 0x01 }, vrid]
}

/// The frame announcing `vip` at `mac`, with its EtherType and destination MAC.
pub fn frame(mac: [u8; 6], vip: IpAddr) -> (u16, [u8; 6], Vec<u8>) {
    match vip {
        IpAddr::V4(v4) => (ETH_P_ARP, [0xff; 6], garp_frame(mac, v4)),
        IpAddr::V6(v6) => (
            ETH_P_IPV6,
            [0x33, 0x33, 0, 0, 0, 1],
            unsolicited_na_frame(mac, v6),
        ),
    }
}

/// keepalived's gratuitous ARP: a request with THA ff:ff:ff:ff:ff:ff and SPA = TPA = the VIP.
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    // Ethernet, IPv4, hlen 6, plen 4, op request.
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&vip.octets());
    f
}

/// keepalived's unsolicited NA: from the VIP to all-nodes (ff02::1), hop limit 255, Override
/// set, with the Target Link-Layer Address option.
pub fn unsolicited_na_frame(mac: [u8; 6], vip: Ipv6Addr) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[ND_NEIGHBOR_ADVERT, 0, 0, 0]);
    icmp.extend_from_slice(&[ND_NA_FLAG_OVERRIDE, 0, 0, 0]);
    icmp.extend_from_slice(&vip.octets());
    // Option 2 (target link-layer address), 1 unit of 8 bytes.
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&mac);
    let sum = checksum_v6(vip, all_nodes, IPPROTO_ICMPV6, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&u16::try_from(icmp.len()).unwrap_or(0).to_be_bytes());
    f.extend_from_slice(&[IPPROTO_ICMPV6, 255]);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&all_nodes.octets());
    f.extend_from_slice(&icmp);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x11];

    #[test]
    fn gratuitous_arp_matches_keepalived_s_frame() {
        // vrrpv2_ipv4.pcap frame 4 (tcpdump of keepalived 2.2.7), 42 bytes.
        #[rustfmt::skip]
        let captured = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x11, 0x08, 0x06, 0x00, 0x01,
            0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x11, 0xc0, 0x00, 0x02, 0x64,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0, 0x00, 0x02, 0x64,
        ];
        assert_eq!(garp_frame(MAC, Ipv4Addr::new(192, 0, 2, 100)), captured);
    }

    #[test]
    fn unsolicited_na_matches_keepalived_s_frame() {
        // vrrpv3_ipv6.pcap frame 4 (tcpdump of keepalived 2.2.7), 86 bytes.
        #[rustfmt::skip]
        let captured = [
            // Ethernet: all-nodes MAC, master MAC, IPv6.
            0x33, 0x33, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x11, 0x86, 0xdd,
            // IPv6: version 6, payload 32, ICMPv6, hop limit 255, VIP -> ff02::1.
            0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff,
            0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
            0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
            // NA, code 0, checksum 0xf71c, flags O.
            0x88, 0x00, 0xf7, 0x1c, 0x20, 0x00, 0x00, 0x00,
            // Target: the VIP.
            0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
            // Target link-layer address option.
            0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x11,
        ];
        let vip: Ipv6Addr = "2001:db8::100".parse().unwrap();
        assert_eq!(unsolicited_na_frame(MAC, vip), captured);
        assert_eq!(frame(MAC, vip.into()).2, captured);
    }
}
