//! The SMTP_CHECK reply parser on arbitrary bytes (what a real server, or a hostile one,
//! sends).
//!
//! Properties: no panic; a complete reply uses no more bytes than it was given, ends at a
//! line end, and its code is three digits; a prefix of it is incomplete, never a different
//! reply; more than MAX_REPLY bytes without a complete reply is an error, never a wait.
//! Seeds: `fuzz/corpus/smtp_reply/`.
#![no_main]

use lbd::health::probe::{MAX_REPLY, parse_reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_reply(data) {
        Ok(Some(reply)) => {
            assert!(reply.len <= data.len());
            assert_eq!(data[reply.len - 1], b'\n');
            assert!((0..=999).contains(&reply.code));
            let prefix = &data[..reply.len - 1];
            assert!(
                !matches!(parse_reply(prefix), Ok(Some(r)) if r.code != reply.code),
                "a prefix parses as another reply"
            );
        }
        Ok(None) => assert!(data.len() <= MAX_REPLY),
        Err(_) => {}
    }
});
