//! The provenance index on any text: no panic, and every value of a text seen only in untrusted
//! output is reported when the same text comes back as an argument (no false "trusted").
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::provenance::{ProvenanceIndex, extract};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut index = ProvenanceIndex::new(1_000_000);
    index.observe(text, true, "fuzz__tool", 0);
    let mut values = extract(text);
    values.sort_by(|a, b| (a.kind, &a.text).cmp(&(b.kind, &b.text)));
    values.dedup();
    let hits = index.lookup("arg", text);
    assert_eq!(hits.len(), values.len(), "every untrusted value is found");
    // Seen in trusted output too: nothing is reported.
    index.observe(text, false, "fuzz__trusted", 1);
    assert!(index.lookup("arg", text).is_empty());
});
