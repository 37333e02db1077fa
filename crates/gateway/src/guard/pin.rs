//! Pin: a tool is callable only while its definition is the one approved. The decision is made
//! when the catalog is built ([`portcullis_core::pin::assess`], applied by `state::pins` at
//! every rebuild): a tool whose definition changed, or was never approved when first use is not
//! trusted, is held back, listed nowhere and refused here by name.

use crate::error::GatewayError;

/// The refusal of a call to `tool`, held back for `reason` (which names the command that
/// approves it).
pub fn refuse(tool: &str, reason: String) -> GatewayError {
    GatewayError::Held {
        tool: tool.to_owned(),
        reason,
    }
}
