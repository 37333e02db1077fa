//! Finding the authorization server of a remote MCP server that answered 401, per the MCP
//! authorization spec (both revisions): its Protected Resource Metadata (RFC 9728) at the URL
//! its challenge names, else under the path of its endpoint, else at its root; a `resource`
//! that is this server (same origin, a path that is a segment prefix of the endpoint's), kept
//! as the server wrote it (it is sent back verbatim as the `resource` parameter); the
//! authorization server's metadata with its issuer identical as a string to the one the
//! resource named, and PKCE `S256` offered; the scopes to ask for.

use portcullis_core::challenge::Challenge;
use reqwest::Url;
use serde::Deserialize;

use crate::fetch::{AuthServerMetadata, DiscoveryError};

/// A server's Protected Resource Metadata: the members used.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct ResourceMetadata {
    /// The resource identifier, as written.
    pub resource: String,
    /// Its authorization servers' issuers.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// The scopes it knows.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
}

/// Where the metadata of the MCP endpoint `mcp` is looked for when its challenge names no URL:
/// under the endpoint's path, then at the root (a root endpoint has only the second).
pub fn metadata_urls(mcp: &Url) -> Vec<Url> {
    let path = mcp.path().trim_end_matches('/');
    let at = |p: String| crate::fetch::at_path(mcp, &p);
    let mut out = Vec::new();
    if !path.is_empty() {
        out.push(at(format!("/.well-known/oauth-protected-resource{path}")));
    }
    out.push(at("/.well-known/oauth-protected-resource".to_owned()));
    out
}

/// Whether the metadata's `resource` is the server at `mcp`: the same origin, and a path that
/// is `mcp`'s path or a segment prefix of it (`https://h/` for `https://h/mcp`, not
/// `https://h/m`). A metadata document naming another resource would have the client send its
/// grant for that resource to this server.
pub fn check_resource(resource: &str, mcp: &Url) -> Result<(), String> {
    let r = Url::parse(resource).map_err(|e| format!("`{resource}` is not a URL: {e}"))?;
    if r.origin() != mcp.origin() {
        return Err(format!(
            "the metadata names resource `{resource}`, not this server ({})",
            mcp.origin().ascii_serialization()
        ));
    }
    if r.fragment().is_some() {
        return Err(format!("the resource `{resource}` has a fragment"));
    }
    let rp = r.path().trim_end_matches('/');
    let mp = mcp.path().trim_end_matches('/');
    let prefix = mp == rp || (mp.starts_with(rp) && mp.as_bytes().get(rp.len()) == Some(&b'/'));
    if prefix {
        Ok(())
    } else {
        Err(format!(
            "the metadata names resource `{resource}`, which is not `{mcp}` or above it"
        ))
    }
}

/// The scopes to ask for: those the challenge names; else those the metadata lists; else none
/// (the server's default).
pub fn select_scopes(challenge: Option<&Challenge>, metadata: &ResourceMetadata) -> Vec<String> {
    let from_challenge = challenge.map(Challenge::scopes).unwrap_or_default();
    if !from_challenge.is_empty() {
        return from_challenge;
    }
    metadata.scopes_supported.clone()
}

/// Whether the authorization server offers PKCE with S256: the spec has the client refuse one
/// that does not say so.
pub fn offers_s256(m: &AuthServerMetadata) -> bool {
    m.code_challenge_methods_supported
        .as_ref()
        .is_some_and(|v| v.iter().any(|x| x == "S256"))
}

/// Fetches the first metadata document that answers: the challenge's `resource_metadata`
/// (when it names one), else [`metadata_urls`]. `http` is the caller's client (the upstream's
/// own, for its origin; the fetch policy's, for another).
pub async fn fetch_resource_metadata(
    http: &reqwest::Client,
    mcp: &Url,
    challenge: Option<&Challenge>,
) -> Result<ResourceMetadata, DiscoveryError> {
    let named = challenge
        .and_then(|c| c.param("resource_metadata"))
        .map(|u| Url::parse(u).map_err(|e| DiscoveryError::Invalid(format!("resource_metadata `{u}`: {e}"))))
        .transpose()?;
    let urls = match named {
        Some(u) => {
            if u.origin() != mcp.origin() {
                crate::fetch::check_url(&u).map_err(|e| DiscoveryError::Invalid(e.to_string()))?;
            }
            vec![u]
        }
        None => metadata_urls(mcp),
    };
    let mut last = String::new();
    for url in urls {
        let resp = http
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| DiscoveryError::Unreachable {
                url: url.to_string(),
                why: e.to_string(),
            })?;
        if !resp.status().is_success() {
            last = format!("{url}: HTTP {}", resp.status());
            continue;
        }
        let body = crate::fetch::read_bounded(resp)
            .await
            .map_err(DiscoveryError::Invalid)?;
        let m: ResourceMetadata =
            serde_json::from_slice(&body).map_err(|e| DiscoveryError::Invalid(format!("{url}: {e}")))?;
        check_resource(&m.resource, mcp).map_err(DiscoveryError::Invalid)?;
        if m.authorization_servers.is_empty() {
            return Err(DiscoveryError::Invalid(format!("{url} names no authorization server")));
        }
        return Ok(m);
    }
    Err(DiscoveryError::Invalid(format!(
        "no protected resource metadata: {last}"
    )))
}

/// The metadata of an authorization server a resource named, by its issuer string: found
/// where the spec says ([`crate::fetch::discover`]), naming exactly that issuer (no
/// normalisation), and offering PKCE S256.
pub async fn authorization_server(http: &reqwest::Client, issuer: &str) -> Result<AuthServerMetadata, DiscoveryError> {
    let url = Url::parse(issuer).map_err(|e| DiscoveryError::Invalid(format!("issuer `{issuer}`: {e}")))?;
    let m = crate::fetch::discover(http, &url).await?;
    if m.issuer.as_deref() != Some(issuer) {
        return Err(DiscoveryError::Invalid(format!(
            "the metadata names issuer {:?}, not `{issuer}`",
            m.issuer
        )));
    }
    if !offers_s256(&m) {
        return Err(DiscoveryError::Invalid(format!(
            "`{issuer}` does not offer PKCE with S256 (code_challenge_methods_supported)"
        )));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn metadata_is_looked_for_under_the_path_then_at_the_root() {
        let urls: Vec<String> = metadata_urls(&url("https://mcp.example.com/team/mcp"))
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            urls,
            [
                "https://mcp.example.com/.well-known/oauth-protected-resource/team/mcp",
                "https://mcp.example.com/.well-known/oauth-protected-resource",
            ]
        );
        assert_eq!(metadata_urls(&url("https://mcp.example.com/")).len(), 1);
    }

    #[test]
    fn only_this_server_or_a_path_above_it_is_its_resource() {
        let mcp = url("http://localhost:3000/mcp");
        for ok in [
            "http://localhost:3000/mcp",
            "http://localhost:3000/mcp/",
            "http://localhost:3000",
            "http://localhost:3000/",
            "HTTP://LOCALHOST:3000/mcp",
        ] {
            assert_eq!(check_resource(ok, &mcp), Ok(()), "{ok}");
        }
        for bad in [
            "https://evil.example.com/mcp",
            "http://localhost:3001/mcp",
            "https://localhost:3000/mcp",
            "http://localhost:3000/m",
            "http://localhost:3000/mcp/deeper",
            "http://localhost:3000/other",
            "not a url",
        ] {
            assert!(check_resource(bad, &mcp).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_come_from_the_challenge_then_the_metadata() {
        let m = ResourceMetadata {
            resource: "https://h/mcp".into(),
            authorization_servers: vec!["https://as".into()],
            scopes_supported: vec!["a".into(), "b".into()],
        };
        let c = portcullis_core::challenge::bearer([r#"Bearer scope="files:read files:write""#]).unwrap();
        assert_eq!(select_scopes(Some(&c), &m), ["files:read", "files:write"]);
        let bare = portcullis_core::challenge::bearer(["Bearer"]).unwrap();
        assert_eq!(select_scopes(Some(&bare), &m), ["a", "b"]);
        assert!(select_scopes(None, &ResourceMetadata::default()).is_empty());
    }

    /// A JSON body, built with the server's own origin.
    type Body = fn(&str) -> serde_json::Value;

    /// A loopback server answering `routes` (path → body).
    async fn serve(routes: Vec<(&'static str, Body)>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let mut app = axum::Router::new();
        for (path, body) in routes {
            let o = origin.clone();
            app = app.route(
                path,
                axum::routing::get(move || {
                    let b = body(&o).to_string();
                    async move { ([(http::header::CONTENT_TYPE, "application/json")], b) }
                }),
            );
        }
        tokio::spawn(async move { axum::serve(listener, app).await });
        origin
    }

    #[tokio::test]
    async fn the_metadata_is_found_checked_and_leads_to_an_issuer_named_exactly() {
        crate::install_crypto();
        let http = crate::fetch::client_builder().build().unwrap();
        // Under the path (no header URL), then the authorization server at a path issuer.
        let origin = serve(vec![
            ("/.well-known/oauth-protected-resource/mcp", |o| {
                serde_json::json!({"resource": format!("{o}/mcp"), "authorization_servers": [format!("{o}/tenant1")], "scopes_supported": ["mcp:basic"]})
            }),
            ("/.well-known/oauth-authorization-server/tenant1", |o| {
                serde_json::json!({"issuer": format!("{o}/tenant1"), "authorization_endpoint": format!("{o}/authorize"), "token_endpoint": format!("{o}/token"), "code_challenge_methods_supported": ["S256"]})
            }),
        ])
        .await;
        let mcp = url(&format!("{origin}/mcp"));
        let m = fetch_resource_metadata(&http, &mcp, None).await.unwrap();
        assert_eq!(m.resource, format!("{origin}/mcp"));
        assert_eq!(select_scopes(None, &m), ["mcp:basic"]);
        let a = authorization_server(&http, &m.authorization_servers[0]).await.unwrap();
        assert_eq!(a.token_endpoint.as_deref(), Some(format!("{origin}/token").as_str()));

        // The challenge's URL wins, and a root resource is kept as written (no slash added).
        let origin = serve(vec![(
            "/custom/prm",
            |o| serde_json::json!({"resource": o, "authorization_servers": [o]}),
        )])
        .await;
        let c =
            portcullis_core::challenge::bearer([format!(r#"Bearer resource_metadata="{origin}/custom/prm""#).as_str()])
                .unwrap();
        let m = fetch_resource_metadata(&http, &url(&format!("{origin}/mcp")), Some(&c))
            .await
            .unwrap();
        assert_eq!(m.resource, origin);

        // Another server's resource; an issuer that differs by a slash; no S256.
        let origin = serve(vec![
            ("/.well-known/oauth-protected-resource", |_| {
                serde_json::json!({"resource": "https://evil.example.com/mcp", "authorization_servers": ["https://evil.example.com"]})
            }),
            ("/.well-known/oauth-authorization-server", |o| {
                serde_json::json!({"issuer": format!("{o}/"), "authorization_endpoint": format!("{o}/a"), "token_endpoint": format!("{o}/t"), "code_challenge_methods_supported": ["S256"]})
            }),
        ])
        .await;
        let e = fetch_resource_metadata(&http, &url(&format!("{origin}/mcp")), None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not this server"), "{e}");
        assert!(authorization_server(&http, &origin).await.is_err());
        let origin = serve(vec![("/.well-known/oauth-authorization-server", |o| {
            serde_json::json!({"issuer": o, "authorization_endpoint": format!("{o}/a"), "token_endpoint": format!("{o}/t")})
        })])
        .await;
        let e = authorization_server(&http, &origin).await.unwrap_err();
        assert!(e.to_string().contains("S256"), "{e}");
    }
}
