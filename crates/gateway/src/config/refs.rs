//! `vault:NAME` references in an upstream's config: where they may stand (environment values,
//! header values, an HTTP URL's password and query values) and how to find them. Resolving
//! them into values is the vault's business, at start (`state::secrets`).

use crate::config::{Transport, UpstreamConfig};

/// The prefix of a secret reference in config values.
pub const PREFIX: &str = "vault:";

/// The secret name a config value refers to, if it is a reference.
pub fn reference(value: &str) -> Option<&str> {
    value.strip_prefix(PREFIX)
}

/// Where in an upstream's config a reference sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// An environment variable of a stdio upstream.
    Env(String),
    /// A header of an HTTP upstream.
    Header(String),
    /// The password of an HTTP upstream's URL (`https://user:vault%3ANAME@host/`).
    UrlPassword,
    /// A query parameter of an HTTP upstream's URL (`?key=vault:NAME`).
    UrlQuery(String),
}

/// One `vault:NAME` reference in an upstream's config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Where it sits.
    pub slot: Slot,
    /// Its config key, for messages (`upstreams.mail.env.IMAP_PASSWORD`).
    pub key: String,
    /// The secret's name.
    pub name: String,
}

/// Every `vault:NAME` reference of an upstream: env values, header values, and its URL's
/// password and query values.
pub fn references(u: &UpstreamConfig) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut add = |slot: Slot, key: String, value: &str| {
        if let Some(name) = reference(value) {
            out.push(Reference {
                slot,
                key,
                name: name.to_owned(),
            });
        }
    };
    match &u.transport {
        Transport::Stdio { env, .. } => {
            for (k, v) in env {
                add(Slot::Env(k.clone()), format!("upstreams.{}.env.{k}", u.name), v);
            }
        }
        Transport::Http { headers, url } => {
            for (k, v) in headers {
                add(Slot::Header(k.clone()), format!("upstreams.{}.headers.{k}", u.name), v);
            }
            if let Some(p) = url_password(url) {
                add(Slot::UrlPassword, format!("upstreams.{}.url (password)", u.name), &p);
            }
            for (k, v) in url.query_pairs() {
                add(
                    Slot::UrlQuery(k.clone().into_owned()),
                    format!("upstreams.{}.url (query `{k}`)", u.name),
                    &v,
                );
            }
        }
    }
    out
}

/// A URL's password, percent-decoded.
pub fn url_password(url: &reqwest::Url) -> Option<String> {
    let p = url.password()?;
    percent_encoding::percent_decode_str(p)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}
