//! What the gateway itself may fetch: the URLs it reads on its own behalf (an OAuth provider's
//! metadata, token and revocation endpoints; later an identity provider's keys) must not become
//! a way into the network it runs in. A URL is https, or http to a loopback address it names;
//! it never reaches a private, shared, link-local (cloud metadata at 169.254.169.254),
//! multicast or reserved address, whether the URL names the address or a name resolves to it.
//! Names are checked on the addresses actually dialled ([`GuardedResolver`]), so a name that
//! resolves to a public address when checked and a private one when dialled gets nowhere.
//!
//! Configured upstream MCP servers are not fetched through this policy: an operator may place
//! them on a private network on purpose. Neither is an identity provider on the company
//! network, when config names its network (`[gateway] fetch_private`): that list is the
//! process's, set once the configuration is loaded ([`allow_private`]); it can never open the
//! cloud metadata addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::RwLock;

use ipnet::IpNet;

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

/// Networks inside which the gateway may fetch anyway (`[gateway] fetch_private`).
static PRIVATE_ALLOWED: RwLock<Vec<IpNet>> = RwLock::new(Vec::new());

/// The cloud metadata services' addresses, which no `fetch_private` entry may open.
pub const METADATA: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
];

/// Lets the gateway fetch from these private networks (an identity provider on the company
/// network): the process's setting, from `[gateway] fetch_private`, which config has checked
/// to leave the metadata addresses out.
pub fn allow_private(nets: &[IpNet]) {
    let nets: Vec<IpNet> = nets
        .iter()
        .copied()
        .filter(|n| !METADATA.iter().any(|m| n.contains(m)))
        .collect();
    *PRIVATE_ALLOWED
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = nets;
}

/// Whether `ip`, of a forbidden kind, is inside a network config allows.
fn allowed_private(ip: IpAddr, nets: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    !METADATA.contains(&ip) && nets.iter().any(|n| n.contains(&ip))
}

fn process_allowed() -> Vec<IpNet> {
    PRIVATE_ALLOWED
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
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
/// ([`names_loopback`]); an address literal must not be private, link-local or reserved,
/// unless inside a network [`allow_private`] opened. Names are checked when they are resolved
/// ([`GuardedResolver`]).
pub fn check_url(url: &Url) -> Result<(), FetchError> {
    check_url_allowing(url, &process_allowed())
}

/// [`check_url`] with these private networks allowed (config, before the process's list is set).
pub fn check_url_allowing(url: &Url, private: &[IpNet]) -> Result<(), FetchError> {
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
        Some(kind) if !loopback && !allowed_private(ip, private) => Err(FetchError::Forbidden {
            host: host.to_string(),
            kind,
        }),
        _ => Ok(()),
    }
}

/// The addresses of `name` the gateway may dial: `localhost` only to loopback addresses, any
/// other name only to public ones. An error when none is left.
pub fn admit(name: &str, addrs: impl IntoIterator<Item = SocketAddr>) -> Result<Vec<SocketAddr>, FetchError> {
    admit_allowing(name, addrs, &process_allowed())
}

/// [`admit`] with these private networks allowed.
pub fn admit_allowing(
    name: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
    private: &[IpNet],
) -> Result<Vec<SocketAddr>, FetchError> {
    let localhost = name.eq_ignore_ascii_case("localhost");
    let mut refused = None;
    let mut admitted = Vec::new();
    for a in addrs {
        let ip = a.ip().to_canonical();
        let kind = if localhost {
            (!ip.is_loopback()).then_some("not a loopback address")
        } else {
            forbidden(ip).filter(|_| !allowed_private(ip, private))
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

/// Largest response read from a provider (metadata, keys, token and error bodies are small).
pub const MAX_BODY: usize = 256 * 1024;

/// A response's body, refused past [`MAX_BODY`].
pub async fn read_bounded(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("response larger than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An authorization server's metadata (RFC 8414, or OpenID Connect discovery): the members the
/// gateway uses, as published. Endpoints are read through [`AuthServerMetadata::endpoint`],
/// which applies the fetch policy.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AuthServerMetadata {
    /// The issuer it names (checked against the one asked for by [`discover`]).
    pub issuer: Option<String>,
    /// `authorization_endpoint`.
    pub authorization_endpoint: Option<String>,
    /// `token_endpoint`.
    pub token_endpoint: Option<String>,
    /// `revocation_endpoint` (RFC 7009).
    pub revocation_endpoint: Option<String>,
    /// `jwks_uri`: the keys its tokens are signed with.
    pub jwks_uri: Option<String>,
    /// `introspection_endpoint` (RFC 7662).
    pub introspection_endpoint: Option<String>,
    /// `authorization_response_iss_parameter_supported` (RFC 9207), as published (anything but
    /// `true` is "not promised").
    pub authorization_response_iss_parameter_supported: Option<serde_json::Value>,
    /// `code_challenge_methods_supported`: PKCE methods (the MCP client needs `S256` listed).
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// `registration_endpoint` (RFC 7591 dynamic client registration).
    pub registration_endpoint: Option<String>,
    /// `scopes_supported`.
    pub scopes_supported: Option<Vec<String>>,
    /// `token_endpoint_auth_methods_supported`.
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// `client_id_metadata_document_supported`, as published.
    pub client_id_metadata_document_supported: Option<serde_json::Value>,
}

impl AuthServerMetadata {
    /// An endpoint the metadata names, parsed and under the fetch policy; `Ok(None)` when the
    /// metadata has none.
    pub fn endpoint(value: Option<&str>, what: &str) -> Result<Option<Url>, String> {
        let Some(v) = value else { return Ok(None) };
        let u = Url::parse(v).map_err(|e| format!("{what} `{v}`: {e}"))?;
        check_url(&u).map_err(|e| format!("{what}: {e}"))?;
        Ok(Some(u))
    }
}

/// Why an issuer's metadata could not be had.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A metadata URL could not be reached.
    #[error("cannot reach {url}: {why}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
    /// The issuer is not fetchable, or no metadata URL answered, or the answer is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// The metadata of `issuer`, from the first of [`discovery_urls`] that answers with success; it
/// must name the same issuer ([`same_issuer`]).
pub async fn discover(http: &reqwest::Client, issuer: &Url) -> Result<AuthServerMetadata, DiscoveryError> {
    check_url(issuer).map_err(|e| DiscoveryError::Invalid(e.to_string()))?;
    let mut last = String::new();
    for url in discovery_urls(issuer) {
        let url = url.to_string();
        let resp = http.get(&url).send().await.map_err(|e| DiscoveryError::Unreachable {
            url: url.clone(),
            why: e.to_string(),
        })?;
        if !resp.status().is_success() {
            last = format!("{url}: HTTP {}", resp.status());
            continue;
        }
        let body = read_bounded(resp).await.map_err(DiscoveryError::Invalid)?;
        let m: AuthServerMetadata =
            serde_json::from_slice(&body).map_err(|e| DiscoveryError::Invalid(format!("{url}: {e}")))?;
        if !m.issuer.as_deref().is_some_and(|i| same_issuer(issuer, i)) {
            return Err(DiscoveryError::Invalid(format!("{url} names issuer {:?}", m.issuer)));
        }
        return Ok(m);
    }
    Err(DiscoveryError::Invalid(last))
}

/// Where an issuer's metadata is looked for, in the order the MCP authorization spec gives (both
/// revisions): RFC 8414 with the issuer's path inserted after the well-known prefix, then
/// OpenID Connect discovery the same way, then OpenID Connect discovery appended to the path.
/// An issuer without a path has the first two only.
pub fn discovery_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let at = |p: String| at_path(issuer, &p);
    let mut out = vec![
        at(format!("/.well-known/oauth-authorization-server{path}")),
        at(format!("/.well-known/openid-configuration{path}")),
    ];
    if !path.is_empty() {
        out.push(at(format!("{path}/.well-known/openid-configuration")));
    }
    out
}

/// `url`'s origin with `path`, and no query or fragment: where a well-known document of it is.
pub fn at_path(url: &Url, path: &str) -> Url {
    let mut u = url.clone();
    u.set_path(path);
    u.set_query(None);
    u.set_fragment(None);
    u
}

/// Whether metadata's `issuer` is the issuer it was fetched for: identical as URLs (RFC 8414
/// §3.3), so scheme and host case, a default port and the root path's slash do not matter,
/// and anything else does (another path, a trailing slash on a path, another port).
pub fn same_issuer(issuer: &Url, claimed: &str) -> bool {
    Url::parse(claimed).is_ok_and(|c| &c == issuer)
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

    #[test]
    fn a_configured_private_network_is_reachable_and_metadata_never() {
        let nets: Vec<IpNet> = ["10.20.0.0/16", "fd12::/16", "169.254.0.0/16"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        let ok = |u: &str| check_url_allowing(&Url::parse(u).unwrap(), &nets);
        assert_eq!(ok("https://10.20.3.4/realms/corp"), Ok(()));
        assert_eq!(ok("https://[fd12::1]/"), Ok(()));
        assert!(ok("https://10.21.0.1/").is_err());
        // Still https only, and the metadata service stays closed whatever the list says.
        assert!(matches!(ok("http://10.20.3.4/"), Err(FetchError::NotHttps(_))));
        assert!(ok("https://169.254.169.254/latest/").is_err());
        assert!(ok("https://[::ffff:169.254.169.254]/").is_err());
        let at = |s: &str| -> SocketAddr { s.parse().unwrap() };
        assert_eq!(
            admit_allowing("idp.corp.internal", [at("10.20.0.9:443"), at("10.99.0.1:443")], &nets).unwrap(),
            vec![at("10.20.0.9:443")]
        );
        assert!(admit_allowing("evil.example", [at("169.254.169.254:80")], &nets).is_err());
        assert!(admit_allowing("idp.corp.internal", [at("10.20.0.9:443")], &[]).is_err());
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
