//! VRRP advertisements on the wire: version 2 (RFC 3768) and version 3 (RFC 5798, RFC 9568),
//! IPv4 and IPv6. Pure: bytes in, values out, and back.
//!
//! [`Packet`] is a view over a buffer with getters and setters for each field; [`AdvertRepr`] is
//! the parsed, checked advertisement. Parsing applies every check the RFCs put on the packet
//! itself (version, type, VRID, length against the address count, checksum, TTL or hop limit,
//! v2 authentication type, advert interval); each rejection is a [`DecodeError`] whose variant
//! names the RFC 6527 statistics counter it feeds. Checks that need the instance's configuration
//! (authentication data, address list, the v2 interval) are the instance's.
//!
//! The no-panic contract (as smoltcp's `wire`): `Packet::new_unchecked` never panics, and the
//! getters may panic on a buffer shorter than the fixed header; `Packet::new_checked` and
//! `AdvertRepr::parse` never panic, whatever the bytes.
//!
//! ```text
//! RFC 3768 §5.1, version 2                RFC 9568 §5.1, version 3
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Auth Type   |   Adver Int   |          Checksum             |   v2
//! |(rsvd) |     Max Adver Int     |          Checksum             |   v3 (centiseconds)
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 IPv4 or IPv6 address(es), Count of them       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Authentication Data (1), (2): v2 only         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The only VRRP message type.
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// VRRP's IPv4 multicast group (RFC 3768 §5.2.2).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// VRRP's IPv6 multicast group (RFC 9568 §5.1.2.2).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The TTL / hop limit every advertisement is sent and must be received with.
pub const TTL: u8 = 255;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 8;
/// Length of v2 authentication data.
pub const AUTH_DATA_LEN: usize = 8;

mod field {
    use std::ops::Range;

    pub(super) const VER_TYPE: usize = 0;
    pub(super) const VRID: usize = 1;
    pub(super) const PRIORITY: usize = 2;
    pub(super) const COUNT: usize = 3;
    pub(super) const AUTH_TYPE: usize = 4;
    pub(super) const ADVER_INT_V2: usize = 5;
    pub(super) const MAX_ADVER_INT_V3: Range<usize> = 4..6;
    pub(super) const CHECKSUM: Range<usize> = 6..8;
    pub(super) const ADDRESSES: usize = 8;
}

/// VRRP protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 3768: IPv4 only, interval in seconds, optional simple-text authentication.
    V2,
    /// RFC 5798 / RFC 9568: IPv4 and IPv6, interval in centiseconds.
    V3,
}

impl Version {
    /// The version field's value.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// How a VRRPv3 checksum over IPv4 is computed (IPv6 always uses its pseudo-header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum V3Ipv4Checksum {
    /// With the IPv4 pseudo-header, as keepalived (and RFC 5798 as it reads it) does by default.
    #[default]
    PseudoHeader,
    /// Over the VRRP message alone, as RFC 9568 §5.2.8 clarifies (keepalived's
    /// `v3_checksum_as_v2`).
    MessageOnly,
}

/// Why an advertisement was rejected; each variant feeds one RFC 6527 counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// Shorter than the fixed header, or than its address count and authentication data need
    /// (`vrrpRouterPacketLengthErrors`).
    Length,
    /// Not version 2 or 3, or not the configured one (`vrrpRouterVersionErrors`).
    Version(u8),
    /// Not an advertisement (`vrrpRouterInvalidTypePktsRcvd`).
    Type(u8),
    /// TTL or hop limit not 255 (`vrrpRouterIpTtlErrors`).
    Ttl(u8),
    /// Bad checksum (`vrrpRouterChecksumErrors`).
    Checksum,
    /// VRID 0 (`vrrpRouterVrIdErrors`).
    Vrid,
    /// v2 authentication type other than 0 (none) or 1 (simple text)
    /// (`vrrpRouterInvalidAuthType`).
    AuthType(u8),
    /// An advertisement interval of 0 (`vrrpRouterAdvIntervalErrors`).
    AdvertInterval,
    /// The IPv4 header around it is malformed, fragmented or not VRRP.
    IpHeader,
}

impl DecodeError {
    /// The counter this error is counted under (snake_case, for logs and metrics).
    pub fn counter(self) -> &'static str {
        match self {
            DecodeError::Length => "packet_length_errors",
            DecodeError::Version(_) => "version_errors",
            DecodeError::Type(_) => "invalid_type_packets",
            DecodeError::Ttl(_) => "ip_ttl_errors",
            DecodeError::Checksum => "checksum_errors",
            DecodeError::Vrid => "vrid_errors",
            DecodeError::AuthType(_) => "invalid_auth_type",
            DecodeError::AdvertInterval => "advert_interval_errors",
            DecodeError::IpHeader => "ip_header_errors",
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Length => write!(f, "length does not match the address count"),
            DecodeError::Version(v) => write!(f, "version {v}"),
            DecodeError::Type(t) => write!(f, "type {t} is not an advertisement"),
            DecodeError::Ttl(t) => write!(f, "TTL/hop limit {t}, not 255"),
            DecodeError::Checksum => write!(f, "bad checksum"),
            DecodeError::Vrid => write!(f, "VRID 0"),
            DecodeError::AuthType(a) => write!(f, "authentication type {a}"),
            DecodeError::AdvertInterval => write!(f, "advertisement interval 0"),
            DecodeError::IpHeader => write!(f, "malformed IPv4 header"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A read/write view of a VRRP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without any check.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// A view of a buffer at least as long as the fixed header.
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Whether the fixed header fits (the address list is checked by [`AdvertRepr::parse`],
    /// which knows the address family).
    pub fn check_len(&self) -> Result<(), DecodeError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(DecodeError::Length)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] >> 4
    }

    /// Type field.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] & 0x0f
    }

    /// Virtual router id.
    pub fn vrid(&self) -> u8 {
        self.buffer.as_ref()[field::VRID]
    }

    /// Priority.
    pub fn priority(&self) -> u8 {
        self.buffer.as_ref()[field::PRIORITY]
    }

    /// Count of addresses.
    pub fn count(&self) -> u8 {
        self.buffer.as_ref()[field::COUNT]
    }

    /// v2 authentication type.
    pub fn auth_type(&self) -> u8 {
        self.buffer.as_ref()[field::AUTH_TYPE]
    }

    /// v2 advertisement interval, in seconds.
    pub fn adver_int_v2(&self) -> u8 {
        self.buffer.as_ref()[field::ADVER_INT_V2]
    }

    /// v3 maximum advertisement interval, in centiseconds (the low 12 bits).
    pub fn max_adver_int_v3(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::MAX_ADVER_INT_V3];
        u16::from_be_bytes([b[0], b[1]]) & 0x0fff
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The bytes after the fixed header: addresses, then v2 authentication data.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[field::ADDRESSES..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version and type.
    pub fn set_version_type(&mut self, version: u8, msg_type: u8) {
        self.buffer.as_mut()[field::VER_TYPE] = (version << 4) | (msg_type & 0x0f);
    }

    /// Sets the VRID.
    pub fn set_vrid(&mut self, vrid: u8) {
        self.buffer.as_mut()[field::VRID] = vrid;
    }

    /// Sets the priority.
    pub fn set_priority(&mut self, priority: u8) {
        self.buffer.as_mut()[field::PRIORITY] = priority;
    }

    /// Sets the address count.
    pub fn set_count(&mut self, count: u8) {
        self.buffer.as_mut()[field::COUNT] = count;
    }

    /// Sets the v2 authentication type and interval (seconds).
    pub fn set_auth_type_adver_int_v2(&mut self, auth_type: u8, seconds: u8) {
        self.buffer.as_mut()[field::AUTH_TYPE] = auth_type;
        self.buffer.as_mut()[field::ADVER_INT_V2] = seconds;
    }

    /// Sets the v3 maximum advertisement interval (centiseconds; the reserved bits are zeroed).
    pub fn set_max_adver_int_v3(&mut self, centis: u16) {
        self.buffer.as_mut()[field::MAX_ADVER_INT_V3]
            .copy_from_slice(&(centis & 0x0fff).to_be_bytes());
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, checksum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }

    /// The body, writable.
    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::ADDRESSES..]
    }

    /// Computes and writes the checksum for a message from `src` to `dst`.
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr, v3_ipv4: V3Ipv4Checksum) {
        self.set_checksum(0);
        let sum = checksum(self.buffer.as_ref(), src, dst, v3_ipv4);
        self.set_checksum(sum);
    }
}

/// One's-complement sum of 16-bit words, RFC 1071.
fn sum_words(mut acc: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for w in &mut chunks {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The checksum of `message` (its checksum field zeroed, or the sum verifies to 0).
///
/// v2: over the message. v3: with the IPv6 pseudo-header (RFC 8200 §8.1), or over IPv4 with
/// the IPv4 pseudo-header unless `v3_ipv4` says the message alone.
pub fn checksum(message: &[u8], src: IpAddr, dst: IpAddr, v3_ipv4: V3Ipv4Checksum) -> u16 {
    let len = message.len();
    let version = message.first().map_or(0, |b| b >> 4);
    let mut acc = 0u32;
    if version == 3 {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) if v3_ipv4 == V3Ipv4Checksum::PseudoHeader => {
                acc = sum_words(acc, &s.octets());
                acc = sum_words(acc, &d.octets());
                acc += u32::from(IPPROTO_VRRP);
                acc += u32::try_from(len).unwrap_or(0);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => return checksum_v6(s, d, IPPROTO_VRRP, message),
            _ => {}
        }
    }
    fold(sum_words(acc, message))
}

/// The checksum of an upper-layer `payload` over IPv6 from `src` to `dst`, with the
/// pseudo-header of RFC 8200 §8.1 (VRRPv3, ICMPv6).
pub fn checksum_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> u16 {
    let mut acc = sum_words(0, &src.octets());
    acc = sum_words(acc, &dst.octets());
    let len = u32::try_from(payload.len()).unwrap_or(0);
    acc += (len >> 16) + (len & 0xffff);
    acc += u32::from(next_header);
    fold(sum_words(acc, payload))
}

/// v2 authentication (RFC 3768 §5.3.6; keepalived's `auth_type PASS`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Auth {
    /// Type 0: no authentication (and always for v3).
    None,
    /// Type 1: simple text password, 8 bytes, zero padded.
    Simple([u8; AUTH_DATA_LEN]),
}

impl std::fmt::Debug for Auth {
    // Passwords stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => write!(f, "None"),
            Auth::Simple(_) => write!(f, "Simple(..)"),
        }
    }
}

impl Auth {
    /// keepalived's `auth_pass`: the first 8 bytes of the password, zero padded.
    pub fn simple(password: &str) -> Self {
        let mut data = [0u8; AUTH_DATA_LEN];
        for (d, s) in data.iter_mut().zip(password.bytes()) {
            *d = s;
        }
        Auth::Simple(data)
    }

    fn type_number(self) -> u8 {
        match self {
            Auth::None => 0,
            Auth::Simple(_) => 1,
        }
    }
}

/// Where an advertisement came from and how it arrived: what the IP layer tells the codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (the multicast group, or a unicast peer).
    pub dst: IpAddr,
    /// TTL or hop limit as received.
    pub ttl: u8,
}

/// A parsed, checked advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdvertRepr {
    /// Protocol version.
    pub version: Version,
    /// Virtual router id, 1 to 255.
    pub vrid: u8,
    /// Priority: 0 (the active router is leaving), 1-254, 255 (the address owner).
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2 carries whole seconds).
    pub advert_int_cs: u16,
    /// The virtual addresses, all of the envelope's family.
    pub addresses: Vec<IpAddr>,
    /// v2 authentication; `Auth::None` for v3.
    pub auth: Auth,
}

impl AdvertRepr {
    /// Parses and checks `packet`, which arrived in `envelope`.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Packet<T>,
        envelope: &Envelope,
        v3_ipv4: V3Ipv4Checksum,
    ) -> Result<Self, DecodeError> {
        packet.check_len()?;
        // RFC 3768 §7.1, RFC 9568 §7.1: TTL/hop limit, version, length, checksum, in this order.
        if envelope.ttl != TTL {
            return Err(DecodeError::Ttl(envelope.ttl));
        }
        let version = match packet.version() {
            2 if envelope.src.is_ipv4() => Version::V2,
            3 => Version::V3,
            other => return Err(DecodeError::Version(other)),
        };
        if packet.msg_type() != TYPE_ADVERTISEMENT {
            return Err(DecodeError::Type(packet.msg_type()));
        }
        let addr_len = if envelope.src.is_ipv4() { 4 } else { 16 };
        let auth_len = if version == Version::V2 {
            AUTH_DATA_LEN
        } else {
            0
        };
        let count = usize::from(packet.count());
        if packet.buffer.as_ref().len() != HEADER_LEN + count * addr_len + auth_len {
            return Err(DecodeError::Length);
        }
        // Under cargo-fuzz the checksum is not checked, so the fuzzer reaches the checks after it.
        if !cfg!(fuzzing)
            && checksum(packet.buffer.as_ref(), envelope.src, envelope.dst, v3_ipv4) != 0
        {
            return Err(DecodeError::Checksum);
        }
        if packet.vrid() == 0 {
            return Err(DecodeError::Vrid);
        }
        let (advert_int_cs, auth) = match version {
            Version::V2 => {
                let auth = match packet.auth_type() {
                    0 => Auth::None,
                    1 => {
                        let mut data = [0u8; AUTH_DATA_LEN];
                        data.copy_from_slice(&packet.body()[count * addr_len..]);
                        Auth::Simple(data)
                    }
                    other => return Err(DecodeError::AuthType(other)),
                };
                (u16::from(packet.adver_int_v2()) * 100, auth)
            }
            Version::V3 => (packet.max_adver_int_v3(), Auth::None),
        };
        if advert_int_cs == 0 {
            return Err(DecodeError::AdvertInterval);
        }
        let addresses = packet.body()[..count * addr_len]
            .chunks_exact(addr_len)
            .map(|a| match <[u8; 4]>::try_from(a) {
                Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
                Err(_) => {
                    let mut v6 = [0u8; 16];
                    v6.copy_from_slice(a);
                    IpAddr::V6(Ipv6Addr::from(v6))
                }
            })
            .collect();
        Ok(Self {
            version,
            vrid: packet.vrid(),
            priority: packet.priority(),
            advert_int_cs,
            addresses,
            auth,
        })
    }

    /// Length of the emitted message.
    pub fn buffer_len(&self) -> usize {
        let addr_len: usize = self
            .addresses
            .iter()
            .map(|a| if a.is_ipv4() { 4 } else { 16 })
            .sum();
        HEADER_LEN
            + addr_len
            + if self.version == Version::V2 {
                AUTH_DATA_LEN
            } else {
                0
            }
    }

    /// Writes the message into `packet` (exactly [`AdvertRepr::buffer_len`] bytes) with its
    /// checksum for `src` -> `dst`.
    ///
    /// The caller keeps the representation valid: at most 255 addresses, all of one family, a v2
    /// interval in whole seconds of at most 255.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: IpAddr,
        dst: IpAddr,
        v3_ipv4: V3Ipv4Checksum,
    ) {
        packet.set_version_type(self.version.number(), TYPE_ADVERTISEMENT);
        packet.set_vrid(self.vrid);
        packet.set_priority(self.priority);
        packet.set_count(u8::try_from(self.addresses.len()).unwrap_or(u8::MAX));
        match self.version {
            Version::V2 => {
                let seconds = u8::try_from(self.advert_int_cs / 100).unwrap_or(u8::MAX);
                packet.set_auth_type_adver_int_v2(self.auth.type_number(), seconds);
            }
            Version::V3 => packet.set_max_adver_int_v3(self.advert_int_cs),
        }
        let body = packet.body_mut();
        let mut at = 0;
        for addr in &self.addresses {
            match addr {
                IpAddr::V4(a) => {
                    body[at..at + 4].copy_from_slice(&a.octets());
                    at += 4;
                }
                IpAddr::V6(a) => {
                    body[at..at + 16].copy_from_slice(&a.octets());
                    at += 16;
                }
            }
        }
        if self.version == Version::V2 {
            let data = match self.auth {
                Auth::None => [0u8; AUTH_DATA_LEN],
                Auth::Simple(d) => d,
            };
            body[at..at + AUTH_DATA_LEN].copy_from_slice(&data);
        }
        packet.fill_checksum(src, dst, v3_ipv4);
    }
}

/// What a raw IPv4 socket's datagram says around the VRRP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Header {
    /// Source.
    pub src: Ipv4Addr,
    /// Destination.
    pub dst: Ipv4Addr,
    /// TTL.
    pub ttl: u8,
}

/// Splits a raw IPv4 datagram (as `recv` on a raw socket returns it) into its header and the
/// VRRP message, trimmed to the header's total length.
pub fn split_ipv4(datagram: &[u8]) -> Result<(Ipv4Header, &[u8]), DecodeError> {
    let ihl = usize::from(datagram.first().ok_or(DecodeError::IpHeader)? & 0x0f) * 4;
    if datagram.len() < 20 || datagram[0] >> 4 != 4 || ihl < 20 || datagram.len() < ihl {
        return Err(DecodeError::IpHeader);
    }
    let total = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let frag = u16::from_be_bytes([datagram[6], datagram[7]]) & 0x3fff;
    if total < ihl || total > datagram.len() || frag != 0 || datagram[9] != IPPROTO_VRRP {
        return Err(DecodeError::IpHeader);
    }
    let octets = |at: usize| {
        Ipv4Addr::new(
            datagram[at],
            datagram[at + 1],
            datagram[at + 2],
            datagram[at + 3],
        )
    };
    let header = Ipv4Header {
        src: octets(12),
        dst: octets(16),
        ttl: datagram[8],
    };
    Ok((header, &datagram[ihl..total]))
}

#[cfg(test)]
mod tests {
    //! Golden bytes: the adverts in `tests/fixtures/vrrp/` are tcpdump captures of keepalived
    //! 2.2.7 (Debian 12) in network namespaces; their fields are decoded one by one in that
    //! folder's README. Each must parse to the expected representation and emit back to the
    //! same bytes.
    use super::*;

    const V2: &[u8] = include_bytes!("../../tests/fixtures/vrrp/vrrpv2_ipv4.pcap");
    const V3_V4: &[u8] = include_bytes!("../../tests/fixtures/vrrp/vrrpv3_ipv4.pcap");
    const V3_V6: &[u8] = include_bytes!("../../tests/fixtures/vrrp/vrrpv3_ipv6.pcap");
    const V2_AUTH: &[u8] = include_bytes!("../../tests/fixtures/vrrp/vrrpv2_auth_2vip.pcap");

    /// The frames of a little-endian, microsecond pcap file.
    fn frames(pcap: &[u8]) -> Vec<&[u8]> {
        assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
        let mut at = 24;
        let mut out = Vec::new();
        while at + 16 <= pcap.len() {
            let len =
                u32::from_le_bytes(pcap[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
            out.push(&pcap[at + 16..at + 16 + len]);
            at += 16 + len;
        }
        out
    }

    /// The VRRP message of an Ethernet frame and its envelope, if the frame carries VRRP.
    fn vrrp(frame: &[u8]) -> Option<(Envelope, &[u8])> {
        match u16::from_be_bytes([frame[12], frame[13]]) {
            0x0800 => {
                let (ip, msg) = split_ipv4(&frame[14..]).ok()?;
                Some((
                    Envelope {
                        src: ip.src.into(),
                        dst: ip.dst.into(),
                        ttl: ip.ttl,
                    },
                    msg,
                ))
            }
            0x86dd if frame[20] == IPPROTO_VRRP => {
                let ip = &frame[14..54];
                let addr = |at: usize| {
                    IpAddr::V6(Ipv6Addr::from(
                        <[u8; 16]>::try_from(&ip[at..at + 16]).expect("16"),
                    ))
                };
                Some((
                    Envelope {
                        src: addr(8),
                        dst: addr(24),
                        ttl: ip[7],
                    },
                    &frame[54..],
                ))
            }
            _ => None,
        }
    }

    fn frame(pcap: &[u8], number: usize) -> (Envelope, Vec<u8>) {
        let (env, msg) = vrrp(frames(pcap)[number - 1]).expect("a VRRP frame");
        (env, msg.to_vec())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    /// Parses, compares with `expected`, emits into a 0xa5-filled buffer, compares the bytes.
    fn golden(pcap: &[u8], number: usize, expected: &AdvertRepr) {
        let (env, bytes) = frame(pcap, number);
        let repr = AdvertRepr::parse(
            &Packet::new_checked(&bytes[..]).expect("header"),
            &env,
            V3Ipv4Checksum::PseudoHeader,
        )
        .expect("parses");
        assert_eq!(&repr, expected);
        let mut out = vec![0xa5; repr.buffer_len()];
        repr.emit(
            &mut Packet::new_unchecked(&mut out[..]),
            env.src,
            env.dst,
            V3Ipv4Checksum::PseudoHeader,
        );
        assert_eq!(
            out, bytes,
            "frame {number} emits back to the captured bytes"
        );
    }

    fn advert(
        version: Version,
        vrid: u8,
        priority: u8,
        addresses: &[&str],
        auth: Auth,
    ) -> AdvertRepr {
        AdvertRepr {
            version,
            vrid,
            priority,
            advert_int_cs: 100,
            addresses: addresses.iter().map(|a| ip(a)).collect(),
            auth,
        }
    }

    #[test]
    fn keepalived_v2_advert_and_priority_zero() {
        golden(
            V2,
            3,
            &advert(Version::V2, 51, 150, &["192.0.2.100"], Auth::None),
        );
        golden(
            V2,
            21,
            &advert(Version::V2, 51, 0, &["192.0.2.100"], Auth::None),
        );
        assert_eq!(frame(V2, 3).1[6..8], [0x86, 0x65], "the README's checksum");
    }

    #[test]
    fn keepalived_v3_ipv4_advert_with_the_pseudo_header() {
        golden(
            V3_V4,
            3,
            &advert(Version::V3, 51, 150, &["192.0.2.100"], Auth::None),
        );
        golden(
            V3_V4,
            21,
            &advert(Version::V3, 51, 0, &["192.0.2.100"], Auth::None),
        );
        // The same bytes do not verify as RFC 9568's message-only checksum.
        let (env, bytes) = frame(V3_V4, 3);
        let parsed = AdvertRepr::parse(
            &Packet::new_unchecked(&bytes[..]),
            &env,
            V3Ipv4Checksum::MessageOnly,
        );
        assert_eq!(parsed, Err(DecodeError::Checksum));
    }

    #[test]
    fn rfc_9568_checksum_round_trips() {
        let repr = advert(Version::V3, 51, 150, &["192.0.2.100"], Auth::None);
        let (src, dst) = (ip("192.0.2.11"), ip("224.0.0.18"));
        let mut out = vec![0; repr.buffer_len()];
        repr.emit(
            &mut Packet::new_unchecked(&mut out[..]),
            src,
            dst,
            V3Ipv4Checksum::MessageOnly,
        );
        let env = Envelope { src, dst, ttl: 255 };
        let packet = Packet::new_unchecked(&out[..]);
        assert_eq!(
            AdvertRepr::parse(&packet, &env, V3Ipv4Checksum::MessageOnly),
            Ok(repr)
        );
        assert_eq!(
            AdvertRepr::parse(&packet, &env, V3Ipv4Checksum::PseudoHeader),
            Err(DecodeError::Checksum)
        );
    }

    #[test]
    fn keepalived_v3_ipv6_advert() {
        golden(
            V3_V6,
            3,
            &advert(Version::V3, 51, 150, &["2001:db8::100"], Auth::None),
        );
        golden(
            V3_V6,
            23,
            &advert(Version::V3, 51, 0, &["2001:db8::100"], Auth::None),
        );
        assert_eq!(frame(V3_V6, 3).0.src, ip("fe80::ff:fe00:11"));
    }

    #[test]
    fn keepalived_v2_simple_password_and_two_addresses() {
        golden(
            V2_AUTH,
            3,
            &advert(
                Version::V2,
                52,
                150,
                &["192.0.2.100", "192.0.2.101"],
                Auth::simple("secret12"),
            ),
        );
    }

    #[test]
    fn every_advert_in_every_capture_parses() {
        // Each capture holds 9 adverts (8 at priority 150, then the priority-0 one), counted
        // independently from each frame's EtherType and IP protocol (112).
        for pcap in [V2, V3_V4, V3_V6, V2_AUTH] {
            let mut priorities = Vec::new();
            for f in frames(pcap) {
                if let Some((env, msg)) = vrrp(f) {
                    let repr = AdvertRepr::parse(
                        &Packet::new_unchecked(msg),
                        &env,
                        V3Ipv4Checksum::PseudoHeader,
                    )
                    .unwrap_or_else(|e| panic!("{e}: {msg:02x?}"));
                    priorities.push(repr.priority);
                }
            }
            assert_eq!(priorities, [150, 150, 150, 150, 150, 150, 150, 150, 0]);
        }
    }

    /// Re-checksums a modified v2 message so only the intended check can fail.
    fn v2_with(change: impl FnOnce(&mut Vec<u8>)) -> (Envelope, Vec<u8>) {
        let (env, mut bytes) = frame(V2, 3);
        change(&mut bytes);
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.fill_checksum(env.src, env.dst, V3Ipv4Checksum::PseudoHeader);
        (env, bytes)
    }

    fn parse(env: &Envelope, bytes: &[u8]) -> Result<AdvertRepr, DecodeError> {
        AdvertRepr::parse(
            &Packet::new_unchecked(bytes),
            env,
            V3Ipv4Checksum::PseudoHeader,
        )
    }

    #[test]
    fn each_rfc_check_rejects_with_its_own_error() {
        let (env, good) = frame(V2, 3);
        assert_eq!(
            parse(&Envelope { ttl: 64, ..env }, &good),
            Err(DecodeError::Ttl(64))
        );
        let mut corrupt = good.clone();
        corrupt[9] ^= 1;
        assert_eq!(parse(&env, &corrupt), Err(DecodeError::Checksum));
        let (env, b) = v2_with(|b| b[0] = 0x41);
        assert_eq!(parse(&env, &b), Err(DecodeError::Version(4)));
        let (env, b) = v2_with(|b| b[0] = 0x22);
        assert_eq!(parse(&env, &b), Err(DecodeError::Type(2)));
        let (env, b) = v2_with(|b| b[1] = 0);
        assert_eq!(parse(&env, &b), Err(DecodeError::Vrid));
        let (env, b) = v2_with(|b| b[4] = 2);
        assert_eq!(parse(&env, &b), Err(DecodeError::AuthType(2)));
        let (env, b) = v2_with(|b| b[5] = 0);
        assert_eq!(parse(&env, &b), Err(DecodeError::AdvertInterval));
        let (env, b) = v2_with(|b| b[3] = 2);
        assert_eq!(
            parse(&env, &b),
            Err(DecodeError::Length),
            "count 2, room for 1"
        );
        let (env, b) = v2_with(|b| b.extend_from_slice(&[0; 4]));
        assert_eq!(parse(&env, &b), Err(DecodeError::Length), "trailing bytes");
        // Version 2 over IPv6 does not exist.
        let v6 = Envelope {
            src: ip("fe80::1"),
            dst: ip("ff02::12"),
            ttl: 255,
        };
        assert_eq!(parse(&v6, &good), Err(DecodeError::Version(2)));
    }

    #[test]
    fn every_truncation_is_rejected() {
        for (pcap, n) in [(V2, 3), (V3_V4, 3), (V3_V6, 3), (V2_AUTH, 3)] {
            let (env, bytes) = frame(pcap, n);
            for len in 0..bytes.len() {
                assert!(
                    parse(&env, &bytes[..len]).is_err(),
                    "{len} of {} bytes",
                    bytes.len()
                );
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A fixed xorshift sequence of mutations of real adverts and of random buffers.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds: Vec<(Envelope, Vec<u8>)> = [(V2, 3), (V3_V4, 3), (V3_V6, 3), (V2_AUTH, 3)]
            .map(|(p, n)| frame(p, n))
            .to_vec();
        for _ in 0..50_000 {
            let (env, seed) = &seeds[(next() % 4) as usize];
            let mut bytes = seed.clone();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            bytes.truncate((next() as usize) % (bytes.len() + 8));
            let _result = parse(env, &bytes);
            let _split = split_ipv4(&bytes);
        }
    }

    #[test]
    fn malformed_ipv4_headers_are_rejected() {
        let f = frames(V2)[2];
        let ip = &f[14..];
        assert!(split_ipv4(ip).is_ok());
        let mut fragment = ip.to_vec();
        fragment[6] = 0x20;
        assert_eq!(split_ipv4(&fragment), Err(DecodeError::IpHeader));
        let mut long = ip.to_vec();
        long[3] = 0xff;
        assert_eq!(
            split_ipv4(&long),
            Err(DecodeError::IpHeader),
            "total length beyond the datagram"
        );
        let mut not_vrrp = ip.to_vec();
        not_vrrp[9] = 17;
        assert_eq!(split_ipv4(&not_vrrp), Err(DecodeError::IpHeader));
        assert_eq!(split_ipv4(&ip[..19]), Err(DecodeError::IpHeader));
    }
}
