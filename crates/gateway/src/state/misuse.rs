//! Credential misuse at run time: every tool call is counted against the baseline of each vault
//! credential its upstream holds ([`portcullis_core::anomaly`]); a use far outside it is
//! logged, POSTed to the configured webhook, and — with `on_anomaly = "suspend"` — suspends the
//! credential: calls to any upstream holding it are refused until `portcullis vault resume`.
//! Suspensions live in the store (so the CLI can lift them) and are re-read with the pins.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};

use portcullis_core::anomaly::{Anomaly, Baseline};
use serde_json::{Value, json};

use crate::error::GatewayError;
use crate::state::Gateway;
use crate::state::taint::now_unix;

/// Most credentials with a baseline (one per vault secret referenced by config, in practice).
const MAX_BASELINES: usize = 10_000;

/// The misuse watch of one gateway.
#[derive(Debug)]
pub struct Misuse {
    /// Per upstream (config order), the vault secrets its config refers to.
    credentials: Vec<Vec<String>>,
    baselines: Mutex<HashMap<String, Baseline>>,
    suspended: RwLock<HashMap<String, String>>,
    http: Option<reqwest::Client>,
}

/// The client that delivers anomaly alerts: no redirects — an alert names a credential, an
/// upstream and a tool, and goes to the address configured, not to wherever that answers to
/// go (a 3xx is a failed delivery, logged). `None` when no client can be built (a TLS backend
/// that cannot start): every delivery then fails and says so.
fn webhook_client() -> Option<reqwest::Client> {
    crate::install_crypto();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .inspect_err(|e| tracing::error!(error = %e, "cannot build the anomaly webhook's HTTP client"))
        .ok()
}

/// POSTs one alert; anything but a 2xx (a redirect included) is a failed delivery.
async fn deliver(client: &reqwest::Client, url: &reqwest::Url, body: &Value) -> Result<(), String> {
    let resp = client
        .post(url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", resp.status()))
    }
}

impl Misuse {
    /// A watch over `credentials` (per upstream), nothing suspended yet.
    pub fn new(credentials: Vec<Vec<String>>) -> Misuse {
        Misuse {
            credentials,
            baselines: Mutex::new(HashMap::new()),
            suspended: RwLock::new(HashMap::new()),
            http: webhook_client(),
        }
    }
}

impl Gateway {
    /// Refuses a call to `upstream` while any credential it holds is suspended.
    pub(crate) fn check_credentials(&self, upstream: usize) -> Result<(), GatewayError> {
        let Some(names) = self.misuse.credentials.get(upstream) else {
            return Ok(());
        };
        let suspended = self.misuse.suspended.read().unwrap_or_else(PoisonError::into_inner);
        crate::guard::credentials::check(names, &suspended)
    }

    /// Counts one call of `tool` at `upstream` against each credential it holds, and acts on
    /// what is far outside the baseline.
    pub(crate) fn record_use(&self, upstream: usize, tool: &str, arguments: &Value, bytes: usize) {
        let Some(names) = self.misuse.credentials.get(upstream).filter(|n| !n.is_empty()) else {
            return;
        };
        let now = now_unix();
        let dests = crate::guard::misuse::destinations(arguments);
        let thresholds = &self.cfg.anomaly.thresholds;
        let mut found: Vec<(String, Anomaly)> = Vec::new();
        {
            let mut baselines = self.misuse.baselines.lock().unwrap_or_else(PoisonError::into_inner);
            for name in names {
                if !baselines.contains_key(name) && baselines.len() >= MAX_BASELINES {
                    continue;
                }
                let b = baselines.entry(name.clone()).or_default();
                found.extend(
                    b.record(now, bytes as u64, &dests, thresholds)
                        .into_iter()
                        .map(|a| (name.clone(), a)),
                );
            }
        }
        let upstream_name = self
            .upstreams()
            .get(upstream)
            .map(|u| u.cfg.name.clone())
            .unwrap_or_default();
        for (name, anomaly) in found {
            self.alert(&name, &upstream_name, tool, &anomaly, now);
        }
    }

    fn alert(&self, credential: &str, upstream: &str, tool: &str, anomaly: &Anomaly, now: i64) {
        let suspend = self.cfg.anomaly.suspend;
        tracing::error!(%credential, %upstream, %tool, suspend, "credential used far outside its baseline: {anomaly}");
        if let Some(url) = self.cfg.anomaly.webhook.clone() {
            let body = json!({
                "event": "credential_anomaly",
                "credential": credential,
                "upstream": upstream,
                "tool": tool,
                "anomaly": anomaly.to_string(),
                "at": now,
                "suspended": suspend,
            });
            match self.misuse.http.clone() {
                Some(client) => {
                    tokio::spawn(async move {
                        if let Err(e) = deliver(&client, &url, &body).await {
                            tracing::warn!(%url, error = %e, "could not deliver the anomaly webhook");
                        }
                    });
                }
                None => tracing::warn!(%url, "could not deliver the anomaly webhook: no HTTP client"),
            }
        }
        if suspend {
            let reason = format!("{anomaly} (via {upstream}, tool {tool})");
            self.misuse
                .suspended
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(credential.to_owned(), reason.clone());
            let store = self.pins().store().clone();
            let credential = credential.to_owned();
            tokio::spawn(async move {
                if let Err(e) = store.suspend_secret(&credential, &reason, now).await {
                    tracing::error!(%credential, error = %e, "could not record the suspension; it holds until restart");
                }
            });
        }
    }

    /// Re-reads the suspensions from the store (a `portcullis vault resume` in another process).
    pub(crate) async fn reload_suspensions(&self) {
        match self.pins().store().suspended_secrets().await {
            Ok(list) => {
                let fresh: HashMap<String, String> = list.into_iter().collect();
                let mut cur = self.misuse.suspended.write().unwrap_or_else(PoisonError::into_inner);
                if *cur != fresh {
                    tracing::info!(suspended = fresh.len(), "credential suspensions changed");
                    *cur = fresh;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not re-read credential suspensions"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback listener that answers every request with `reply`; how many requests it saw.
    async fn answering(reply: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(reply.as_bytes()).await;
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn an_alert_goes_only_where_it_is_configured_to_go() {
        let (elsewhere, reached) = answering("HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n".into()).await;
        let (hook, _) = answering(format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: {elsewhere}\r\ncontent-length: 0\r\n\r\n"
        ))
        .await;
        let client = webhook_client().unwrap();
        let e = deliver(&client, &hook.parse().unwrap(), &json!({"credential": "api_token"}))
            .await
            .unwrap_err();
        assert!(e.contains("307"), "{e}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(
            reached.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "the redirect was followed"
        );
        // A plain 2xx is a delivery.
        let (ok, _) = answering("HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n".into()).await;
        deliver(&client, &ok.parse().unwrap(), &json!({})).await.unwrap();
    }
}
