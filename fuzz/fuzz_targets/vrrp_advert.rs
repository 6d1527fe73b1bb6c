//! The VRRP codec on arbitrary bytes: an IPv4 datagram (header included, as the raw socket
//! returns it) or a bare message with an IPv6 envelope, chosen by the first byte.
//!
//! Properties: no panic anywhere; whatever parses emits to a message that parses back to the
//! same advert; a state machine fed the advert does not panic either.
//! Seeds: `fuzz/corpus/vrrp_advert/` (the keepalived captures' adverts).
#![no_main]

use std::{
    net::{IpAddr, Ipv6Addr},
    time::Duration,
};

use lbd::{
    time::Instant,
    vrrp::{
        instance::{Config, Instance},
        wire::{AdvertRepr, Envelope, Packet, V3Ipv4Checksum, split_ipv4},
    },
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let v6_src: IpAddr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).into();
    let v6_dst: IpAddr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12).into();
    let (envelope, message) = if selector & 1 == 0 {
        let Ok((ip, message)) = split_ipv4(rest) else {
            return;
        };
        (
            Envelope {
                src: ip.src.into(),
                dst: ip.dst.into(),
                ttl: ip.ttl,
            },
            message,
        )
    } else {
        (
            Envelope {
                src: v6_src,
                dst: v6_dst,
                ttl: 255,
            },
            rest,
        )
    };
    let checksum = if selector & 2 == 0 {
        V3Ipv4Checksum::PseudoHeader
    } else {
        V3Ipv4Checksum::MessageOnly
    };
    let Ok(advert) = AdvertRepr::parse(&Packet::new_unchecked(message), &envelope, checksum) else {
        return;
    };
    let mut bytes = vec![0xa5; advert.buffer_len()];
    advert.emit(
        &mut Packet::new_unchecked(&mut bytes[..]),
        envelope.src,
        envelope.dst,
        checksum,
    );
    let again = AdvertRepr::parse(&Packet::new_unchecked(&bytes[..]), &envelope, checksum)
        .expect("what lbd emits parses");
    assert_eq!(again, advert);

    let mut instance = Instance::new(Config {
        version: advert.version,
        vrid: advert.vrid,
        priority: 100,
        advert_int_cs: 100,
        addresses: advert.addresses.clone(),
        primary: envelope.dst,
        preempt: true,
        preempt_delay: Duration::ZERO,
        start_active: selector & 4 != 0,
        auth: advert.auth,
        down_timer_adverts: 3,
        check_addresses: true,
    });
    let now = Instant::from_nanos(1);
    instance.startup(now);
    instance.handle_advert(now, envelope.src, &advert);
    instance.handle_timeout(Instant::from_nanos(u64::MAX / 2));
    while instance.poll_transmit().is_some() {}
    while instance.poll_event().is_some() {}
});
