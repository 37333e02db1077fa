//! Trust labels: what the gateway knows about content that came back from a tool.
//!
//! A label has two independent parts. *Integrity*: `trusted` or `untrusted` — could someone
//! other than the user have written this (an email's sender, a web page's author, a planted
//! file)? *Confidentiality*: `private` or not — should this leave only to where the user meant
//! it to go? Labels only ever go up: the label of a session is the join of every label it has
//! seen, and joining is commutative, associative and idempotent (a lattice), so the order in
//! which results arrive does not matter.

use std::fmt;

/// Could the content have been written by someone other than the user?
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Integrity {
    /// Only the user or software the user trusts wrote it.
    #[default]
    Trusted,
    /// Anyone may have written it.
    Untrusted,
}

/// The label of a piece of content, or of everything a session has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Label {
    /// Integrity.
    pub integrity: Integrity,
    /// Confidentiality: private content.
    pub private: bool,
}

impl Label {
    /// Trusted, not private: the bottom of the lattice, and a fresh session's label.
    pub const TRUSTED: Label = Label {
        integrity: Integrity::Trusted,
        private: false,
    };
    /// Untrusted, not private.
    pub const UNTRUSTED: Label = Label {
        integrity: Integrity::Untrusted,
        private: false,
    };

    /// The least label at least as strict as both.
    #[must_use]
    pub fn join(self, other: Label) -> Label {
        Label {
            integrity: self.integrity.max(other.integrity),
            private: self.private || other.private,
        }
    }

    /// Whether `self` is at most as strict as `other` in both parts.
    pub fn flows_to(self, other: Label) -> bool {
        self.integrity <= other.integrity && (!self.private || other.private)
    }

    /// Whether anyone else may have written the content.
    pub fn is_untrusted(self) -> bool {
        self.integrity == Integrity::Untrusted
    }

    /// The label as policy sees it: a set of names (`untrusted`, `private`); empty when trusted
    /// and not private.
    pub fn names(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.is_untrusted() {
            v.push("untrusted");
        }
        if self.private {
            v.push("private");
        }
        v
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.names();
        if names.is_empty() {
            f.write_str("trusted")
        } else {
            f.write_str(&names.join("+"))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn label() -> impl Strategy<Value = Label> {
        (any::<bool>(), any::<bool>()).prop_map(|(u, p)| Label {
            integrity: if u { Integrity::Untrusted } else { Integrity::Trusted },
            private: p,
        })
    }

    proptest! {
        #[test]
        fn join_is_a_lattice(a in label(), b in label(), c in label()) {
            prop_assert_eq!(a.join(b), b.join(a));
            prop_assert_eq!(a.join(b).join(c), a.join(b.join(c)));
            prop_assert_eq!(a.join(a), a);
            prop_assert_eq!(a.join(Label::TRUSTED), a);
            // The join is an upper bound of both, and never loses untrusted or private.
            prop_assert!(a.flows_to(a.join(b)) && b.flows_to(a.join(b)));
            prop_assert_eq!(a.join(b).is_untrusted(), a.is_untrusted() || b.is_untrusted());
            prop_assert_eq!(a.join(b).private, a.private || b.private);
        }
    }

    #[test]
    fn names_for_policy_and_display() {
        assert!(Label::TRUSTED.names().is_empty());
        assert_eq!(Label::TRUSTED.to_string(), "trusted");
        let both = Label::UNTRUSTED.join(Label {
            integrity: Integrity::Trusted,
            private: true,
        });
        assert_eq!(both.names(), ["untrusted", "private"]);
        assert_eq!(both.to_string(), "untrusted+private");
    }
}
