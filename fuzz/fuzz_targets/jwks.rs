//! The JWKS parser on arbitrary bytes: no panic; what parses has one entry per key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::checks::jwks;

fuzz_target!(|data: &[u8]| {
    if let Ok(keys) = jwks::parse(data) {
        let document: serde_json::Value = serde_json::from_slice(data).expect("parse accepted invalid JSON");
        assert_eq!(keys.len(), document["keys"].as_array().map_or(usize::MAX, Vec::len));
    }
});
