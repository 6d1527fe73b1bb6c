//! Configuration loading on arbitrary text, in both syntaxes: keepalived.conf (the lexer, the
//! statement grouping, every block reader including the LVS and checker blocks) and TOML (the
//! table-to-statement mapping).
//!
//! Properties: no panic; an error always carries a message; a valid model's virtual servers
//! each have at least one service.
//! Seeds: `fuzz/corpus/config/`.
#![no_main]

use lbd::config::{Format, Overrides, Unimplemented, load};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for format in [Format::Keepalived, Format::Toml] {
        for unimplemented in [Unimplemented::Reject, Unimplemented::Warn] {
            match load("fuzz.conf", text, format, unimplemented, &Overrides::default()) {
                Ok(loaded) => {
                    assert!(loaded.model.virtual_servers.iter().all(|vs| !vs.services.is_empty()));
                }
                Err(errors) => assert!(errors.iter().all(|e| !e.message.is_empty())),
            }
        }
    }
});
