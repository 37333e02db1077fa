//! The loopback redirect of a native OAuth client (RFC 8252 §7.3): a one-shot HTTP listener
//! on 127.0.0.1 that takes the authorization code back from the browser. It accepts only
//! `GET /callback` carrying the `state` it was started with; anything else is refused and the
//! wait goes on, so a page that guesses the port cannot end or hijack the flow.

use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use reqwest::Url;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::OAuthError;

/// What the browser brought back.
#[derive(Debug)]
enum Returned {
    Code(Zeroizing<String>, Option<String>),
    Error { error: String, description: Option<String> },
}

/// A listener waiting for the redirect.
#[derive(Debug)]
pub struct Redirect {
    url: Url,
    listener: Option<TcpListener>,
}

impl Redirect {
    /// Listens on 127.0.0.1:`port` (0: any free port).
    pub async fn bind(port: u16) -> Result<Redirect, OAuthError> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let listen_err = |e: std::io::Error| OAuthError::Listen {
            addr: addr.to_string(),
            why: e.to_string(),
        };
        let listener = TcpListener::bind(addr).await.map_err(listen_err)?;
        let local = listener.local_addr().map_err(listen_err)?;
        let url = Url::parse(&format!("http://{local}/callback")).map_err(|e| OAuthError::Url(e.to_string()))?;
        Ok(Redirect {
            url,
            listener: Some(listener),
        })
    }

    /// The redirect URI to register and send.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Serves until a redirect with `state` arrives (returning its code, and the `iss` it
    /// names if any, RFC 9207) or `timeout` passes.
    pub async fn wait(
        mut self,
        state: &str,
        timeout: Duration,
    ) -> Result<(Zeroizing<String>, Option<String>), OAuthError> {
        let listener = self.listener.take().ok_or_else(|| OAuthError::Listen {
            addr: self.url.to_string(),
            why: "already used".into(),
        })?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Returned>();
        let expected = state.to_owned();
        let app = Router::new().fallback(move |uri: Uri| {
            let tx = tx.clone();
            let expected = expected.clone();
            async move { answer(&uri, &expected, &tx) }
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        let got = tokio::time::timeout(timeout, rx.recv()).await;
        // Let the browser's page finish loading, then stop.
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        match got {
            Err(_) | Ok(None) => Err(OAuthError::Timeout(timeout)),
            Ok(Some(Returned::Code(code, iss))) => Ok((code, iss)),
            Ok(Some(Returned::Error { error, description })) => Err(OAuthError::Denied(match description {
                Some(d) => format!("{error}: {d}"),
                None => error,
            })),
        }
    }
}

fn page(status: StatusCode, text: &str) -> Response {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>Portcullis</title><p>{}</p>",
        text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

fn answer(uri: &Uri, expected: &str, tx: &mpsc::UnboundedSender<Returned>) -> Response {
    if uri.path() != "/callback" {
        return page(StatusCode::NOT_FOUND, "Not found.");
    }
    let Ok(full) = Url::parse(&format!("http://127.0.0.1{uri}")) else {
        return page(StatusCode::BAD_REQUEST, "Malformed redirect.");
    };
    let get = |k: &str| full.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
    let state = get("state");
    // A redirect without our state is not ours (or is forged): refuse it and keep waiting.
    if state.as_deref() != Some(expected) {
        return page(
            StatusCode::BAD_REQUEST,
            "This response does not belong to the authorization Portcullis started.",
        );
    }
    let returned = match (get("code"), get("error")) {
        (_, Some(error)) => Returned::Error {
            error,
            description: get("error_description"),
        },
        (Some(code), None) => Returned::Code(Zeroizing::new(code), get("iss")),
        (None, None) => {
            return page(
                StatusCode::BAD_REQUEST,
                "The redirect carries neither a code nor an error.",
            );
        }
    };
    let ok = matches!(returned, Returned::Code(..));
    let _ = tx.send(returned);
    if ok {
        page(StatusCode::OK, "Portcullis is connected. You can close this window.")
    } else {
        page(
            StatusCode::OK,
            "The authorization was not granted. You can close this window.",
        )
    }
}
