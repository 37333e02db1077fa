//! The tool-poisoning scanner on any JSON definition and any text: no panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use portcullis_core::scan::Scanner;

static SCANNER: LazyLock<Scanner> = LazyLock::new(Scanner::new);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = SCANNER.scan_text("description", text);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = SCANNER.scan_definition(&value, &["send_email", "read_file"]);
    }
});
