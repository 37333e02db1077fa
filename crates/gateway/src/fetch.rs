//! What the gateway itself may fetch: the URLs it reads on its own behalf (an OAuth provider's
//! metadata, token and revocation endpoints; later an identity provider's keys) must not become
//! a way into the network it runs in. A URL is https, or http to a loopback address it names;
//! it never reaches a private, shared, link-local (cloud metadata at 169.254.169.254),
//! multicast or reserved address, whether the URL names the address or a name resolves to it.
//! Names are checked on the addresses actually dialled ([`GuardedResolver`]), so a name that
//! resolves to a public address when checked and a private one when dialled gets nowhere.
//!
//! Configured upstream MCP servers are not fetched through this policy: an operator may place
//! them on a private network on purpose.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// Why a URL or an address is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    /// Neither https nor http to loopback.
    #[error("`{0}` is not https (http only to a loopback address)")]
    NotHttps(String),
    /// The URL has no host.
    #[error("`{0}` names no host")]
    NoHost(String),
    /// The URL names, or its name resolves to, an address the gateway never fetches from.
    #[error("`{host}` is {kind}, which the gateway never fetches from")]
    Forbidden {
        /// The host as the URL names it.
        host: String,
        /// What kind of address it is.
        kind: &'static str,
    },
}

/// What kind of address `ip` is when the gateway must not fetch from it, `None` for a public
/// address. Loopback is reported too: it is allowed only where the URL itself names it.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address (where cloud metadata services answer)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared (carrier-grade NAT) address")
    } else if a == 0 || ip.is_broadcast() || a >= 240 {
        Some("a reserved address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("a reserved address")
    } else if ip.is_unique_local() {
        Some("a private (unique local) address")
    } else if ip.is_unicast_link_local() {
        Some("a link-local address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if first == 0 || first == 0x0064 {
        // ::/16 holds the deprecated IPv4-compatible form; 64:ff9b::/96 and 64:ff9b:1::/48 are
        // NAT64 prefixes that embed an IPv4 address of any kind.
        Some("an address that embeds an IPv4 address")
    } else {
        None
    }
}

/// Whether `url` names this machine: `localhost`, or a loopback address literal.
pub fn names_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(v4)) => v4.is_loopback(),
        Some(Host::Ipv6(v6)) => v6.is_loopback(),
        None => false,
    }
}

/// Whether the gateway may fetch `url`: https, or http to a loopback address the URL names
/// ([`names_loopback`]); an address literal must not be private, link-local or reserved. Names
/// are checked when they are resolved ([`GuardedResolver`]).
pub fn check_url(url: &Url) -> Result<(), FetchError> {
    let host = url.host().ok_or_else(|| FetchError::NoHost(url.to_string()))?;
    let loopback = names_loopback(url);
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(FetchError::NotHttps(url.to_string())),
    }
    let ip = match host {
        Host::Ipv4(v4) => IpAddr::V4(v4),
        Host::Ipv6(v6) => IpAddr::V6(v6),
        Host::Domain(_) => return Ok(()),
    };
    match forbidden(ip) {
        Some(kind) if !loopback => Err(FetchError::Forbidden {
            host: host.to_string(),
            kind,
        }),
        _ => Ok(()),
    }
}

/// The addresses of `name` the gateway may dial: `localhost` only to loopback addresses, any
/// other name only to public ones. An error when none is left.
pub fn admit(name: &str, addrs: impl IntoIterator<Item = SocketAddr>) -> Result<Vec<SocketAddr>, FetchError> {
    let localhost = name.eq_ignore_ascii_case("localhost");
    let mut refused = None;
    let mut admitted = Vec::new();
    for a in addrs {
        let ip = a.ip().to_canonical();
        let kind = if localhost {
            (!ip.is_loopback()).then_some("not a loopback address")
        } else {
            forbidden(ip)
        };
        match kind {
            None => admitted.push(a),
            Some(k) => {
                refused.get_or_insert(k);
            }
        }
    }
    if admitted.is_empty() {
        return Err(FetchError::Forbidden {
            host: name.to_owned(),
            kind: refused.unwrap_or("an address it could not resolve"),
        });
    }
    Ok(admitted)
}

/// A resolver for reqwest that hands the connector only the addresses [`admit`] allows.
#[derive(Debug, Default, Clone, Copy)]
pub struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // The port is the connector's to set; 0 here.
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let admitted = admit(&host, found)?;
            let addrs: reqwest::dns::Addrs = Box::new(admitted.into_iter());
            Ok(addrs)
        })
    }
}

/// A reqwest client builder for what the gateway fetches on its own behalf: names resolved
/// through [`GuardedResolver`], no proxy, no redirects (each URL is checked by [`check_url`]
/// before it is requested, and a redirect would skip that).
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(std::sync::Arc::new(GuardedResolver))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_inside_a_network_are_refused_and_public_ones_pass() {
        for (ip, refused) in [
            ("8.8.8.8", false),
            ("2606:4700::1111", false),
            ("127.0.0.1", true),
            ("127.8.9.10", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("172.31.255.255", true),
            ("172.32.0.1", false),
            ("192.168.1.1", true),
            ("169.254.169.254", true),
            ("100.64.0.1", true),
            ("100.100.100.200", true),
            ("100.128.0.1", false),
            ("0.0.0.0", true),
            ("255.255.255.255", true),
            ("240.0.0.1", true),
            ("224.0.0.1", true),
            ("::1", true),
            ("::", true),
            ("fd00:ec2::254", true),
            ("fc00::1", true),
            ("fe80::1", true),
            ("ff02::1", true),
            ("::ffff:169.254.169.254", true),
            ("::ffff:10.0.0.1", true),
            ("::ffff:8.8.8.8", false),
            ("::10.0.0.1", true),
            ("64:ff9b::a9fe:a9fe", true),
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(forbidden(parsed).is_some(), refused, "{ip}");
        }
    }

    #[test]
    fn a_url_is_https_or_http_to_a_loopback_it_names() {
        let ok = |u: &str| check_url(&Url::parse(u).unwrap());
        assert_eq!(ok("https://login.example.com/realms/corp"), Ok(()));
        assert_eq!(ok("http://127.0.0.1:8080/.well-known/openid-configuration"), Ok(()));
        assert_eq!(ok("http://localhost:9000/token"), Ok(()));
        assert_eq!(ok("http://[::1]:9000/token"), Ok(()));
        assert!(matches!(ok("http://login.example.com/"), Err(FetchError::NotHttps(_))));
        assert!(matches!(ok("ftp://127.0.0.1/"), Err(FetchError::NotHttps(_))));
        assert!(matches!(ok("http://10.0.0.1/"), Err(FetchError::NotHttps(_))));
        // Loopback named as loopback, as config has always read it: not an IPv4-mapped form.
        assert!(matches!(ok("http://[::ffff:127.0.0.1]/"), Err(FetchError::NotHttps(_))));
        // Address literals in every spelling the URL parser accepts.
        for u in [
            "https://169.254.169.254/latest/meta-data/",
            "https://0xa9fea9fe/",
            "https://2852039166/",
            "https://0251.0376.0251.0376/",
            "https://[::ffff:169.254.169.254]/",
            "https://10.0.0.1/token",
            "https://[fd00:ec2::254]/",
            "https://100.100.100.200/",
        ] {
            assert!(matches!(ok(u), Err(FetchError::Forbidden { .. })), "{u}");
        }
        // Loopback under https is loopback the URL names: allowed, as over http.
        assert_eq!(ok("https://127.0.0.1:8443/"), Ok(()));
    }

    #[test]
    fn a_name_is_dialled_only_at_the_addresses_it_may_reach() {
        let at = |s: &str| -> SocketAddr { s.parse().unwrap() };
        // A public name that resolves into the network (DNS rebinding, a hostile record).
        let e = admit("idp.example.com", [at("10.0.0.5:443"), at("169.254.169.254:443")]).unwrap_err();
        assert!(
            matches!(e, FetchError::Forbidden { ref host, .. } if host == "idp.example.com"),
            "{e}"
        );
        assert!(admit("idp.example.com", [at("127.0.0.1:443")]).is_err());
        // Mixed answers: only the public address is kept.
        assert_eq!(
            admit("idp.example.com", [at("10.0.0.5:443"), at("93.184.215.14:443")]).unwrap(),
            vec![at("93.184.215.14:443")]
        );
        // localhost reaches loopback only.
        assert_eq!(
            admit("localhost", [at("127.0.0.1:0"), at("[::1]:0")]).unwrap(),
            vec![at("127.0.0.1:0"), at("[::1]:0")]
        );
        assert!(admit("LOCALHOST", [at("93.184.215.14:0")]).is_err());
        assert!(admit("idp.example.com", []).is_err());
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_leads_into_the_network() {
        use reqwest::dns::Resolve as _;
        let name = |s: &str| -> reqwest::dns::Name { s.parse().unwrap() };
        let local: Vec<SocketAddr> = GuardedResolver.resolve(name("localhost")).await.unwrap().collect();
        assert!(
            !local.is_empty() && local.iter().all(|a| a.ip().is_loopback()),
            "{local:?}"
        );
        // A name that only resolves to loopback, not called localhost (an IPv4 literal as a
        // name in dotted form resolves to itself without DNS).
        assert!(GuardedResolver.resolve(name("127.0.0.2")).await.is_err());
    }
}
