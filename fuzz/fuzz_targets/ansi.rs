//! The ANSI renderer: any log bytes render as escaped HTML lines (no raw markup from the log).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for line in baton_web::ansi::render_lines(data) {
        // The renderer writes only <span ...> and </span> tags: any other `<` is the log's.
        let rest = line.replace("</span>", "");
        let mut parts = rest.split('<');
        parts.next();
        for p in parts {
            assert!(p.starts_with("span "), "unescaped markup in {line:?}");
        }
    }
});
