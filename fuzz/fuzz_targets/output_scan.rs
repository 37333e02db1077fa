//! The output scanner and `sanitize` on any text: no panic, findings bounded and in range, and
//! sanitised text carries no invisible characters.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use portcullis_core::output::{MAX_FINDINGS, OutputScanner, sanitize};

static SCANNER: LazyLock<OutputScanner> = LazyLock::new(OutputScanner::new);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let findings = SCANNER.scan(text);
    assert!(findings.len() <= MAX_FINDINGS);
    assert!(findings.iter().all(|f| f.offset < text.len().max(1)));
    if let Some(clean) = sanitize(text) {
        let again = SCANNER.scan(&clean);
        assert!(
            again
                .iter()
                .all(|f| f.rule != "tag-characters" && f.rule != "zero-width-or-bidi"),
            "sanitised text still has invisible characters: {clean:?}"
        );
    }
});
