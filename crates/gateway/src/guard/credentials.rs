//! Credentials: a call to an upstream is refused while any credential that upstream holds is
//! suspended for misuse (`portcullis vault resume NAME` lifts it). Applies to every planned
//! method, not only tool calls: a suspended credential serves nothing.

use std::collections::HashMap;

use crate::error::GatewayError;

/// Refuses when one of `held` (the vault secrets the upstream's config names) is in
/// `suspended` (secret → why).
pub fn check(held: &[String], suspended: &HashMap<String, String>) -> Result<(), GatewayError> {
    for name in held {
        if let Some(reason) = suspended.get(name) {
            return Err(GatewayError::Suspended {
                credential: name.clone(),
                reason: reason.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suspended_credential_refuses_its_upstream_only() {
        let suspended = HashMap::from([("mail-token".to_owned(), "burst of 500 sends".to_owned())]);
        let e = check(&["other".into(), "mail-token".into()], &suspended).unwrap_err();
        assert!(
            e.to_string().contains("`mail-token` is suspended: burst of 500 sends"),
            "{e}"
        );
        assert!(check(&["other".into()], &suspended).is_ok());
        assert!(check(&[], &suspended).is_ok());
    }
}
