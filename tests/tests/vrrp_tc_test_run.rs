//! lbd's TC program `lb_vrrp_tc` through BPF_PROG_TEST_RUN, on keepalived's own adverts
//! (../shared/fixtures/vrrp, copied in lb-userspace/tests/fixtures/vrrp) and on variants of them:
//! what it records, and that it lets every packet through.
#![expect(
    unused_crate_dependencies,
    reason = "each target of lb-tests uses part of the package's dependencies; cargo cannot scope them"
)]

use lb_common::VrrpKey;
use lbd::dataplane::vrrp_watch::VrrpWatch;

const TC_ACT_OK: i32 = 0;
const V2: &[u8] = include_bytes!("../../lb-userspace/tests/fixtures/vrrp/vrrpv2_ipv4.pcap");
const V3_V4: &[u8] = include_bytes!("../../lb-userspace/tests/fixtures/vrrp/vrrpv3_ipv4.pcap");
const V3_V6: &[u8] = include_bytes!("../../lb-userspace/tests/fixtures/vrrp/vrrpv3_ipv6.pcap");

/// The frames of a little-endian, microsecond pcap file.
fn frames(pcap: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        out.push(pcap[at + 16..at + 16 + len].to_vec());
        at += 16 + len;
    }
    out
}

fn is_vrrp(frame: &[u8]) -> bool {
    (frame[12..14] == [0x08, 0x00] && frame[23] == 112)
        || (frame[12..14] == [0x86, 0xdd] && frame[20] == 112)
}

fn watch() -> VrrpWatch {
    lb_tests::require_root();
    VrrpWatch::load(lb_tests::bpf_object()).expect("loading lb_vrrp_tc")
}

fn record(watch: &VrrpWatch, vrid: u8, family: u8) -> Option<lb_common::VrrpSeen> {
    watch
        .records()
        .into_iter()
        .find(|(k, _)| (k.vrid, k.family) == (vrid, family))
        .map(|(_, seen)| seen)
}

#[test]
fn every_keepalived_advert_is_recorded_and_everything_passes() {
    for (name, pcap, family) in [("v2", V2, 4), ("v3 IPv4", V3_V4, 4), ("v3 IPv6", V3_V6, 6)] {
        let mut watch = watch();
        let all = frames(pcap);
        let adverts = all.iter().filter(|f| is_vrrp(f)).count() as u64;
        let mut before = 0;
        for frame in &all {
            assert_eq!(
                watch.test_run(frame).expect("test run"),
                TC_ACT_OK,
                "{name}: always passes"
            );
            if is_vrrp(frame) {
                let seen = record(&watch, 51, family).expect("recorded");
                assert!(seen.last_ns > before, "{name}: stamped as it arrives");
                before = seen.last_ns;
            }
        }
        let seen = record(&watch, 51, family).expect("recorded");
        assert_eq!(
            seen.count, adverts,
            "{name}: one count per advert, ARPs/NAs/MLD not counted"
        );
        // The last advert of each capture is keepalived's priority-0 goodbye.
        assert_eq!(seen.priority, 0, "{name}");
        assert_eq!(seen.version, if name == "v2" { 2 } else { 3 }, "{name}");
        assert_eq!(seen.interval_cs, 100, "{name}: 1 s");
        if family == 4 {
            assert_eq!(
                seen.sender[10..],
                [0xff, 0xff, 192, 0, 2, 11],
                "{name}: IPv4-mapped sender"
            );
        } else {
            assert_eq!(seen.sender[..2], [0xfe, 0x80], "{name}: link-local sender");
        }
        assert_eq!(watch.records().len(), 1, "{name}: one virtual router");
    }
}

#[test]
fn off_link_non_adverts_and_vlan_tagged_frames() {
    let advert = frames(V3_V4)
        .into_iter()
        .find(|f| is_vrrp(f))
        .expect("an advert");
    let mut watch = watch();
    // TTL 64: from off-link, never counted (RFC 9568 §7.1).
    let mut ttl = advert.clone();
    ttl[22] = 64;
    // Type 2 instead of ADVERTISEMENT.
    let mut vtype = advert.clone();
    vtype[34] = 0x32;
    // Version 4.
    let mut version = advert.clone();
    version[34] = 0x41;
    // Truncated inside the VRRP header.
    let truncated = advert[..38].to_vec();
    for frame in [&ttl, &vtype, &version, &truncated] {
        assert_eq!(watch.test_run(frame).expect("test run"), TC_ACT_OK);
    }
    assert!(
        watch.records().is_empty(),
        "nothing recorded: {:?}",
        watch.records()
    );
    // One 802.1Q tag: recorded like the untagged advert.
    let mut tagged = advert[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
    tagged.extend_from_slice(&advert[12..]);
    assert_eq!(watch.test_run(&tagged).expect("test run"), TC_ACT_OK);
    let records = watch.records();
    assert_eq!(records.len(), 1);
    let (key, seen): (VrrpKey, _) = records[0];
    assert_eq!(
        (key.vrid, key.family, seen.count, seen.priority),
        (51, 4, 1, 150)
    );
}
