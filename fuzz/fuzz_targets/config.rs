//! The config loader: any text either loads or fails with errors that each name a place.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|yaml: &str| {
    let file = std::path::Path::new("fuzz.yml");
    if let Err(errors) = baton_core::config::load_str(file, yaml) {
        let text = errors.to_string();
        assert!(!text.trim().is_empty(), "an error with no message");
    }
});
