//! The JSON-RPC envelope parser on any frame: no panic, and the limits hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::jsonrpc::Message;
use portcullis_core::Limits;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_frame_bytes: 4096,
        max_depth: 16,
    };
    if let Ok(m) = Message::parse(data, &limits) {
        // What parsed encodes again.
        assert!(!m.to_vec().is_empty());
    }
});
