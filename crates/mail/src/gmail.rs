//! The Gmail REST API (v1), with an OAuth access token from the environment. Least privilege
//! on Gmail is only possible here: each profile's tools need only `gmail.readonly`,
//! `gmail.compose`, `gmail.send` or `gmail.modify`, never `https://mail.google.com/`.
//!
//! Messages travel as `raw` (the whole RFC 5322 message, base64url), so reading, replying and
//! forwarding share the parsing and rendering of the IMAP backend. Folders are labels.

use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt as _;
use serde_json::{Map, Value, json};

use crate::backend::{Backend, Fetched, Flags, MailError, MsgRef, Naming, Outgoing, Query};
use crate::render;

/// Google's endpoint.
pub const GOOGLE: &str = "https://gmail.googleapis.com";

/// Largest response read (a raw message of Gmail's 25 MB limit, base64url, fits).
const MAX_RESPONSE: usize = 48 * 1024 * 1024;
/// Summaries fetched at once by `search_messages`.
const PARALLEL: usize = 8;
/// Tries of an idempotent request that met a rate limit or a passing server error.
const TRIES: u32 = 3;

/// base64url, padded or not (Google's `raw` comes either way).
const RAW: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// The value at `pointer` in `v`, or null.
fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or(&Value::Null)
}

/// The Gmail backend.
#[derive(Debug)]
pub struct Gmail {
    http: reqwest::Client,
    base: String,
    user: String,
    token: crate::config::Credential,
    /// The labels as last listed, and when: names are resolved against them for a minute
    /// (a search or a move in a folder would otherwise list every label first), and listed
    /// again when a name is not among them (a label made since).
    labels: std::sync::Mutex<Option<(std::time::Instant, Labels)>>,
}

/// Labels as listed: (id, name).
type Labels = std::sync::Arc<Vec<(String, String)>>;

/// How long listed labels are used to resolve names.
const LABELS_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// A Gmail id (message, thread, draft, label): letters, digits, `_` and `-` only, so it can
/// stand in a URL path as it is.
fn checked_id<'a>(what: &str, id: &'a str) -> Result<&'a str, MailError> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(MailError::Invalid(format!(
            "`{}` is not a Gmail {what} id",
            id.escape_default()
        )));
    }
    Ok(id)
}

/// A Gmail search term's value: Gmail's `q` has no escape for `"`, so quotes are dropped and
/// the value is one quoted phrase.
fn phrase(v: &str) -> String {
    format!("\"{}\"", v.replace(['"', '\r', '\n'], " ").trim())
}

/// The `q` of a query: the native query as given, and each field as a term.
pub fn q(query: &Query) -> String {
    let mut parts = Vec::new();
    if let Some(n) = &query.native {
        parts.push(n.clone());
    }
    if let Some(v) = &query.from {
        parts.push(format!("from:{}", phrase(v)));
    }
    if let Some(v) = &query.subject {
        parts.push(format!("subject:{}", phrase(v)));
    }
    if let Some(v) = &query.text {
        parts.push(phrase(v));
    }
    if query.unseen {
        parts.push("is:unread".into());
    }
    if let Some(d) = &query.since {
        parts.push(format!("after:{}", d.format("%Y/%m/%d")));
    }
    if let Some(d) = &query.before {
        parts.push(format!("before:{}", d.format("%Y/%m/%d")));
    }
    parts.join(" ")
}

/// What Google's error body says: `{"error": {"code", "message", "status", "errors":
/// [{"reason"}]}}`.
fn error_of(status: u16, body: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = at(&v, "/error");
    let message = at(e, "/message")
        .as_str()
        .map(render::visible)
        .unwrap_or_else(|| format!("HTTP {status}"));
    let reason = at(e, "/errors/0/reason")
        .as_str()
        .or_else(|| at(e, "/status").as_str())
        .unwrap_or_default()
        .to_owned();
    (message, reason)
}

impl Gmail {
    /// A client of the API at `base` (checked by `config::gmail_api`) for `user`, with an
    /// access token; `ca_pem` adds trust anchors.
    pub fn new(
        base: String,
        user: String,
        token: crate::config::Credential,
        ca_pem: Option<&[u8]>,
    ) -> Result<Gmail, MailError> {
        let tls = crate::imap::tls_config(ca_pem)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(60))
            // A redirect must not carry the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| MailError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Gmail {
            http,
            base,
            user,
            token,
            labels: std::sync::Mutex::new(None),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/gmail/v1/users/me/{path}", self.base)
    }

    /// One request; the JSON answer, or the error Google's body describes. GETs are retried on
    /// 429 and 5xx (with `Retry-After`, at most 2 s); a POST is never repeated, so a message is
    /// never sent twice.
    async fn call(&self, post: Option<&Value>, path: &str, query: &[(&str, String)]) -> Result<Value, MailError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let url = reqwest::Url::parse_with_params(&self.url(path), query)
                .map_err(|e| MailError::Invalid(format!("the Gmail API URL: {e}")))?;
            let req = match post {
                Some(body) => self
                    .http
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string()),
                None => self.http.get(url),
            };
            let resp = req
                .bearer_auth(self.token.secret()?)
                .send()
                .await
                .map_err(|e| self.unreachable(&e))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body = read(resp).await.map_err(|e| self.unreachable(&e))?;
            if (200..300).contains(&status) {
                return serde_json::from_slice(&body)
                    .map_err(|e| MailError::Server(format!("the Gmail API answered something that is not JSON: {e}")));
            }
            if post.is_none() && (status == 429 || status >= 500) && tries < TRIES {
                let wait = retry_after.map_or(250 * u64::from(tries), |s| s * 1000).min(2000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                continue;
            }
            let (message, reason) = error_of(status, &body);
            return Err(match (status, reason.as_str()) {
                (401, _) => MailError::Auth(self.user.clone()),
                (403, "insufficientPermissions" | "ACCESS_TOKEN_SCOPE_INSUFFICIENT") => MailError::Forbidden(format!(
                    "the access token lacks the Gmail scope this needs ({message}); connect again with this profile's scopes"
                )),
                (403, _) => MailError::Forbidden(message),
                (404, _) => MailError::NotFound(format!("Gmail has no such {}: {message}", what(path))),
                (400, _) => MailError::Invalid(format!("Gmail refused the request: {message}")),
                (429, _) => MailError::Server(format!("Gmail's rate limit: {message}; try again later")),
                _ => MailError::Server(format!("Gmail answered {status} {reason}: {message}")),
            });
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> MailError {
        let text = format!("{e:#}");
        if text.to_ascii_lowercase().contains("certificate") {
            MailError::Tls(self.base.clone(), text)
        } else {
            MailError::Connect(self.base.clone(), text)
        }
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, MailError> {
        self.call(None, path, query).await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, MailError> {
        self.call(Some(body), path, &[]).await
    }

    /// Every label: (id, name), listed now (and remembered for [`Gmail::label_ids`]).
    async fn labels(&self) -> Result<Labels, MailError> {
        let v = self.get("labels", &[]).await?;
        let listed: Vec<(String, String)> = at(&v, "/labels")
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| Some((at(l, "/id").as_str()?.to_owned(), at(l, "/name").as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let listed = std::sync::Arc::new(listed);
        *self.labels.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((std::time::Instant::now(), listed.clone()));
        Ok(listed)
    }

    /// The ids of labels named `names` (by name, any case, or by id): against the labels
    /// listed in the last minute, else (or when a name is not among them) listed now; asks
    /// nothing when there is no name to resolve.
    async fn label_ids(&self, names: &[&str]) -> Result<Vec<String>, MailError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let recent = self
            .labels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .filter(|(at, _)| at.elapsed() < LABELS_FOR)
            .map(|(_, l)| l.clone());
        if let Some(known) = recent
            && let Ok(ids) = resolve(&known, names)
        {
            return Ok(ids);
        }
        resolve(&self.labels().await?, names)
    }

    async fn summary(&self, id: String) -> Result<Value, MailError> {
        let id = checked_id("message", &id)?.to_owned();
        let query = [
            ("format", "metadata".to_owned()),
            ("metadataHeaders", "From".to_owned()),
            ("metadataHeaders", "Subject".to_owned()),
            ("metadataHeaders", "Date".to_owned()),
        ];
        let v = self.get(&format!("messages/{id}"), &query).await?;
        // The headers, as a header block, parsed as every message is.
        let mut block = String::new();
        for h in at(&v, "/payload/headers").as_array().into_iter().flatten() {
            if let (Some(name), Some(value)) = (at(h, "/name").as_str(), at(h, "/value").as_str()) {
                block.push_str(&format!("{name}: {}\r\n", value.replace(['\r', '\n'], " ")));
            }
        }
        block.push_str("\r\n");
        let mut out = render::summary(block.as_bytes());
        out.insert("id".into(), json!(id));
        out.insert("threadId".into(), at(&v, "/threadId").clone());
        let unread = at(&v, "/labelIds")
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x == "UNREAD"));
        out.insert("unread".into(), json!(unread));
        Ok(Value::Object(out))
    }

    fn message_path(m: &MsgRef, action: &str) -> Result<String, MailError> {
        Ok(format!("messages/{}{action}", checked_id("message", &m.id)?))
    }

    fn raw(out: &Outgoing) -> Value {
        let mut v = json!({"raw": base64::engine::general_purpose::URL_SAFE.encode(out.message.formatted())});
        if let (Some(t), Some(obj)) = (&out.thread, v.as_object_mut()) {
            obj.insert("threadId".into(), json!(t));
        }
        v
    }
}

/// The ids of the labels named `names` (by name, any case, or by id) among `labels`.
fn resolve(labels: &[(String, String)], names: &[&str]) -> Result<Vec<String>, MailError> {
    names
        .iter()
        .map(|n| {
            labels
                .iter()
                .find(|(id, name)| id == n || name.eq_ignore_ascii_case(n))
                .map(|(id, _)| id.clone())
                .ok_or_else(|| MailError::NotFound(format!("Gmail has no label named `{n}`")))
        })
        .collect()
}

/// What a path names, for a 404's message.
fn what(path: &str) -> &'static str {
    match path.split('/').next() {
        Some("messages") => "message",
        Some("threads") => "thread",
        Some("drafts") => "draft",
        Some("labels") => "label",
        _ => "resource",
    }
}

/// The body, up to `MAX_RESPONSE` bytes.
async fn read(resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > MAX_RESPONSE {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn ids(v: &Value, key: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, name) in [("id", key), ("threadId", "threadId")] {
        if let Some(x) = v.get(k).and_then(Value::as_str) {
            out.insert(name.into(), json!(x));
        }
    }
    out
}

impl Backend for Gmail {
    const NAMING: Naming = Naming::Id;
    const DESCRIPTION: &'static str = "Gmail, through the Gmail API.";
    const READS_RECIPIENTS_FROM_MESSAGE: bool = true;

    async fn folders(&self) -> Result<Vec<String>, MailError> {
        Ok(self.labels().await?.iter().map(|(_, name)| name.clone()).collect())
    }

    async fn search(&self, folder: &str, query: &Query, limit: usize) -> Result<Vec<Value>, MailError> {
        let mut params = vec![("q", q(query)), ("maxResults", limit.min(500).to_string())];
        // No folder: all mail, as Gmail's own search box.
        let folder: Vec<&str> = Some(folder).filter(|f| !f.is_empty()).into_iter().collect();
        for id in self.label_ids(&folder).await? {
            params.push(("labelIds", id));
        }
        let mut found = Vec::new();
        loop {
            let page = self.get("messages", &params).await?;
            for m in at(&page, "/messages").as_array().into_iter().flatten() {
                if let Some(id) = at(m, "/id").as_str() {
                    found.push(id.to_owned());
                }
            }
            match at(&page, "/nextPageToken").as_str() {
                Some(token) if found.len() < limit => {
                    params.retain(|(k, _)| *k != "pageToken");
                    params.push(("pageToken", token.to_owned()));
                }
                _ => break,
            }
        }
        found.truncate(limit);
        // In order: `buffered` keeps the list's order (newest first).
        futures::stream::iter(found.into_iter().map(|id| self.summary(id)))
            .buffered(PARALLEL)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    async fn fetch(&self, m: &MsgRef) -> Result<Fetched, MailError> {
        let v = self
            .get(&Self::message_path(m, "")?, &[("format", "raw".to_owned())])
            .await?;
        let raw = at(&v, "/raw")
            .as_str()
            .ok_or_else(|| MailError::Server("Gmail returned a message without `raw`".into()))?;
        let raw = RAW
            .decode(raw)
            .map_err(|e| MailError::Server(format!("Gmail returned a `raw` that is not base64url: {e}")))?;
        Ok(Fetched {
            raw,
            thread: at(&v, "/threadId").as_str().map(str::to_owned),
        })
    }

    async fn save_draft(&self, out: &Outgoing) -> Result<Map<String, Value>, MailError> {
        let v = self.post("drafts", &json!({"message": Self::raw(out)})).await?;
        let mut r = ids(at(&v, "/message"), "id");
        if let Some(d) = at(&v, "/id").as_str() {
            r.insert("draftId".into(), json!(d));
        }
        Ok(r)
    }

    async fn send(&self, out: &Outgoing) -> Result<Map<String, Value>, MailError> {
        let v = self.post("messages/send", &Self::raw(out)).await?;
        Ok(ids(&v, "id"))
    }

    async fn move_to(&self, m: &MsgRef, target: &str) -> Result<(), MailError> {
        let path = Self::message_path(m, "/modify")?;
        let ids = self.label_ids(&[target, &m.folder]).await?;
        let (add, remove) = match ids.as_slice() {
            [t, f] if t != f => (vec![t.clone()], vec![f.clone()]),
            [t, _] => (vec![t.clone()], Vec::new()),
            _ => return Err(MailError::Invalid("a move needs a target label".into())),
        };
        self.post(&path, &json!({"addLabelIds": add, "removeLabelIds": remove}))
            .await
            .map(drop)
    }

    async fn set_flags(&self, m: &MsgRef, flags: &Flags) -> Result<(), MailError> {
        let path = Self::message_path(m, "/modify")?;
        let add: Vec<&str> = flags.add_labels.iter().map(String::as_str).collect();
        let remove: Vec<&str> = flags.remove_labels.iter().map(String::as_str).collect();
        let mut add = self.label_ids(&add).await?;
        let mut remove = self.label_ids(&remove).await?;
        match flags.read {
            Some(true) => remove.push("UNREAD".into()),
            Some(false) => add.push("UNREAD".into()),
            None => {}
        }
        match flags.starred {
            Some(true) => add.push("STARRED".into()),
            Some(false) => remove.push("STARRED".into()),
            None => {}
        }
        if add.iter().any(|a| remove.contains(a)) {
            return Err(MailError::Invalid("a label cannot be added and removed at once".into()));
        }
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        self.post(&path, &json!({"addLabelIds": add, "removeLabelIds": remove}))
            .await
            .map(drop)
    }

    async fn trash(&self, m: &MsgRef) -> Result<(), MailError> {
        self.post(&Self::message_path(m, "/trash")?, &json!({})).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_become_gmail_search_terms_without_breaking_out_of_their_phrase() {
        let query = Query {
            from: Some("bob@example.test".into()),
            subject: Some("a \"b\" OR in:anywhere".into()),
            text: Some("invoice\r\n".into()),
            unseen: true,
            native: Some("has:attachment".into()),
            since: chrono::NaiveDate::from_ymd_opt(2026, 2, 1),
            before: chrono::NaiveDate::from_ymd_opt(2026, 12, 7),
        };
        assert_eq!(
            q(&query),
            "has:attachment from:\"bob@example.test\" subject:\"a  b  OR in:anywhere\" \"invoice\" is:unread after:2026/02/01 before:2026/12/07"
        );
        assert_eq!(q(&Query::default()), "");
    }

    #[test]
    fn ids_cannot_leave_their_path_segment() {
        assert!(checked_id("message", "18c0000000001f3").is_ok());
        assert!(checked_id("label", "Label_12").is_ok());
        for bad in ["", "../labels", "a/b", "a?b", "a%2Fb", "a b"] {
            assert!(checked_id("message", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn raw_is_read_padded_or_not() {
        assert_eq!(RAW.decode("aGk_").ok(), Some(b"hi?".to_vec()));
        assert_eq!(RAW.decode("aGk").ok(), Some(b"hi".to_vec()));
        assert_eq!(RAW.decode("aGk=").ok(), Some(b"hi".to_vec()));
    }

    #[test]
    fn google_error_bodies_are_read() {
        let body = br#"{"error":{"code":403,"message":"Request had insufficient authentication scopes.","errors":[{"message":"Insufficient Permission","domain":"global","reason":"insufficientPermissions"}],"status":"PERMISSION_DENIED"}}"#;
        assert_eq!(
            error_of(403, body),
            (
                "Request had insufficient authentication scopes.".to_owned(),
                "insufficientPermissions".to_owned()
            )
        );
        assert_eq!(error_of(502, b"<html>").0, "HTTP 502");
    }
}
