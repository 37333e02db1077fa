//! `portcullis call`: one tool call, through the gateway built from a config, or straight at
//! an MCP server with the same client code the gateway uses toward its upstreams.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use portcullis_core::{Id, Message, Outcome, Params, Request, Response};
use portcullis_gateway::config::{Config, EraChoice, Transport};
use portcullis_gateway::dispatch::ctx::ClientCtx;
use portcullis_gateway::dispatch::outbox::Outbox;
use portcullis_gateway::redact as secrets;
use portcullis_gateway::state::pins::PinMode;
use portcullis_gateway::upstream::client::{Call, CallSink, ClientMeta, ConnectOptions, McpClient};
use serde_json::{Map, Value, json};

use crate::{EX_UNAVAILABLE, EX_USAGE};

mod form;

/// Arguments of `portcullis call`.
#[derive(Args, Debug)]
pub struct CallArgs {
    /// The configuration file (through the gateway).
    #[arg(long, short, env = "PORTCULLIS_CONFIG", conflicts_with = "url")]
    config: Option<PathBuf>,
    /// An MCP server's Streamable HTTP endpoint (direct, without a gateway).
    #[arg(long)]
    url: Option<String>,
    /// Extra HTTP header for `--url`, as `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Which era to speak with `--url`.
    #[arg(long, value_enum, default_value_t = EraArg::Auto)]
    era: EraArg,
    /// The tool to call. With `--url` and no tool, the server's tools are listed instead.
    tool: Option<String>,
    /// The tool arguments as a JSON object.
    #[arg(long, default_value = "{}")]
    args: String,
    /// How long to wait for the result (and for upstreams to start).
    #[arg(long, default_value = "120s", value_parser = crate::parse_duration)]
    timeout: Duration,
    /// How to answer a server's elicitation forms (with `--url`).
    #[arg(long, value_enum, default_value_t = Elicit::Ask)]
    elicitation: Elicit,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum EraArg {
    Auto,
    Modern,
    Legacy,
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("portcullis call: {msg}");
    ExitCode::from(EX_USAGE)
}

/// Runs the command.
pub async fn run(args: CallArgs) -> ExitCode {
    let arguments: Value = match serde_json::from_str(&args.args) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return usage("`--args` must be a JSON object"),
        Err(e) => return usage(format!("`--args` is not JSON: {e}")),
    };
    if let Some(url) = args.url.clone() {
        return direct(&args, &url, arguments).await;
    }
    let Some(tool) = args.tool.clone() else {
        return usage("name the TOOL to call");
    };
    let path = args.config.clone().unwrap_or_else(|| PathBuf::from("portcullis.toml"));
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    through_gateway(cfg, &tool, arguments, args.timeout).await
}

async fn through_gateway(cfg: Config, tool: &str, arguments: Value, timeout: Duration) -> ExitCode {
    let gw = match crate::open(cfg, PinMode::Record).await {
        Ok(gw) => gw,
        Err(code) => return code,
    };
    gw.wait_settled(timeout).await;
    let ctx = ClientCtx {
        era: portcullis_core::mcp::Era::Modern,
        version: portcullis_core::mcp::V2026_07_28.into(),
        meta: ClientMeta::default(),
        principal: "local".into(),
        attributes: Default::default(),
        session: None,
        connection: Some("cli".into()),
    };
    let (tx, mut rx) = Outbox::channel();
    let printer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            eprintln!("{}", String::from_utf8_lossy(&secrets::wire(&m)));
        }
    });
    let outbox = Outbox::new(tx, None, timeout);
    let mut params = Params::new();
    let _ = params.insert("name", tool);
    let _ = params.insert("arguments", &arguments);
    let req = Request {
        id: Id::Int(1),
        method: "tools/call".into(),
        params: Some(params),
    };
    let resp = tokio::time::timeout(timeout, gw.handle(&ctx, req, &outbox)).await;
    drop(outbox);
    let _ = printer.await;
    gw.stop().await;
    match resp {
        Ok(r) => print_result(&r),
        Err(_) => {
            eprintln!("portcullis call: no result within {timeout:?}");
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}

/// Prints a tool result, scrubbed of every vault secret (and token minted from one) like
/// anything else a client receives; the exit code says whether the tool succeeded.
fn print_result(r: &Response) -> ExitCode {
    let clean = |s: &str| String::from_utf8_lossy(&secrets::scrub(s.as_bytes())).into_owned();
    match &r.outcome {
        Outcome::Result(raw) => {
            let v: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
            outln!("{}", clean(&serde_json::to_string_pretty(&v).unwrap_or_default()));
            if v.get("isError").and_then(Value::as_bool).unwrap_or(false) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Outcome::Error(e) => {
            eprintln!("portcullis call: error {}: {}", e.code, clean(&e.message));
            if let Some(d) = &e.data {
                eprintln!("{}", clean(d.get()));
            }
            ExitCode::FAILURE
        }
    }
}

fn parse_headers(raw: &[String]) -> Result<BTreeMap<String, String>, String> {
    raw.iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| format!("`--header {h}` must look like `Name: value`"))
        })
        .collect()
}

/// How `portcullis call` answers an elicitation form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Elicit {
    /// A person answers on the terminal; without a terminal every form is declined.
    #[default]
    Ask,
    /// Every form is accepted with its schema defaults, unattended (a test harness's choice:
    /// a gateway's approval question has no default and declines such an answer).
    Defaults,
    /// Every form is declined.
    Decline,
}

/// Answers what a server asks of this command-line client. Only elicitation is supported;
/// nobody at a terminal means a decline, never a silent accept.
pub fn answer_locally(mode: Elicit, method: &str, params: Option<&Value>) -> Outcome {
    let answer = match method {
        "elicitation/create" => match mode {
            Elicit::Defaults => json!({"action": "accept", "content": defaults_of(params)}),
            Elicit::Decline => json!({"action": "decline"}),
            Elicit::Ask if std::io::stdin().is_terminal() => form::ask(params),
            Elicit::Ask => {
                eprintln!("portcullis call: the server asked for input and no terminal is here to answer; declined");
                json!({"action": "decline"})
            }
        },
        other => {
            return Outcome::Error(portcullis_core::ErrorObject::new(
                portcullis_core::jsonrpc::code::METHOD_NOT_FOUND,
                format!("`portcullis call` cannot answer `{other}`"),
            ));
        }
    };
    match serde_json::value::to_raw_value(&answer) {
        Ok(raw) => Outcome::Result(raw),
        Err(e) => Outcome::Error(portcullis_core::ErrorObject::new(
            portcullis_core::jsonrpc::code::INTERNAL_ERROR,
            format!("cannot encode the answer: {e}"),
        )),
    }
}

/// Answers on a blocking thread (a terminal read must not stall the runtime).
async fn answer(mode: Elicit, method: String, params: Option<Value>) -> Outcome {
    tokio::task::spawn_blocking(move || answer_locally(mode, &method, params.as_ref()))
        .await
        .unwrap_or_else(|e| {
            Outcome::Error(portcullis_core::ErrorObject::new(
                portcullis_core::jsonrpc::code::INTERNAL_ERROR,
                format!("the answer failed: {e}"),
            ))
        })
}

/// The schema's defaults, as a form filled in by nobody.
fn defaults_of(params: Option<&Value>) -> Map<String, Value> {
    params
        .and_then(|p| p.get("requestedSchema"))
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .filter_map(|(k, p)| p.get("default").map(|d| (k.clone(), d.clone())))
                .collect()
        })
        .unwrap_or_default()
}

/// What this client declares.
fn client_capabilities() -> Map<String, Value> {
    let mut caps = Map::new();
    caps.insert("elicitation".into(), json!({"form": {}}));
    caps
}

async fn direct(args: &CallArgs, url: &str, arguments: Value) -> ExitCode {
    let headers = match parse_headers(&args.headers) {
        Ok(h) => h,
        Err(e) => return usage(e),
    };
    let url = match url.parse() {
        Ok(u) => u,
        Err(e) => return usage(format!("`--url {url}`: {e}")),
    };
    let opts = ConnectOptions {
        era: match args.era {
            EraArg::Auto => EraChoice::Auto,
            EraArg::Modern => EraChoice::Modern,
            EraArg::Legacy => EraChoice::Legacy,
        },
        legacy_capabilities: client_capabilities(),
        limits: portcullis_core::Limits::default(),
        probe_timeout: Duration::from_secs(10),
        handshake_timeout: args.timeout,
        label: "server".into(),
    };
    let transport = Transport::Http { url, headers };
    let client = match McpClient::connect(&transport, &opts).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcullis call: {e}");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let code = match &args.tool {
        Some(tool) => match call_tool(&client, tool, arguments, args.timeout, args.elicitation).await {
            Ok(resp) => print_result(&resp),
            Err(e) => {
                eprintln!("portcullis call: {e}");
                ExitCode::from(EX_UNAVAILABLE)
            }
        },
        None => match list_tools(&client, args.timeout).await {
            Ok(tools) => {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "tools": tools })).unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("portcullis call: {e}");
                ExitCode::from(EX_UNAVAILABLE)
            }
        },
    };
    client.shutdown().await;
    code
}

/// Every tool the server lists, following pages (at most 100).
async fn list_tools(client: &McpClient, timeout: Duration) -> Result<Vec<Value>, String> {
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let params = cursor.as_ref().map(|c| {
            let mut p = Params::new();
            let _ = p.insert("cursor", c);
            p
        });
        let resp = client
            .call(Call {
                meta: Some(meta()),
                ..Call::new("tools/list", params, timeout)
            })
            .await
            .map_err(|e| e.to_string())?;
        let page: Value = match &resp.outcome {
            Outcome::Result(raw) => {
                serde_json::from_str(raw.get()).map_err(|e| format!("malformed tools/list: {e}"))?
            }
            Outcome::Error(e) => return Err(format!("tools/list failed: {} ({})", e.message, e.code)),
        };
        tools.extend(page.get("tools").and_then(Value::as_array).cloned().unwrap_or_default());
        cursor = page
            .get("nextCursor")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    Ok(tools)
}

/// Calls a tool: lists tools first (so `x-mcp-header` annotations are known), relays
/// server-to-client requests to [`answer_locally`] (answered as `mode` says), and retries `input_required` results with
/// the answers, echoing `requestState`.
pub async fn call_tool(
    client: &McpClient,
    tool: &str,
    arguments: Value,
    timeout: Duration,
    mode: Elicit,
) -> Result<Response, String> {
    let _ = client
        .call(Call {
            meta: Some(meta()),
            ..Call::new("tools/list", None, timeout)
        })
        .await;
    let mut params = Params::new();
    let _ = params.insert("name", tool);
    let _ = params.insert("arguments", &arguments);
    for _ in 0..16 {
        let resp = call_relaying(client, "tools/call", params.clone(), timeout, mode).await?;
        let Outcome::Result(raw) = &resp.outcome else {
            return Ok(resp);
        };
        let v: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
        if v.get("resultType").and_then(Value::as_str) != Some("input_required") {
            return Ok(resp);
        }
        let mut answers = Map::new();
        if let Some(reqs) = v.get("inputRequests").and_then(Value::as_object) {
            for (key, req) in reqs {
                let method = req.get("method").and_then(Value::as_str).unwrap_or_default();
                if let Outcome::Result(r) = answer(mode, method.to_owned(), req.get("params").cloned()).await {
                    answers.insert(key.clone(), serde_json::from_str(r.get()).unwrap_or(Value::Null));
                }
            }
        }
        let _ = params.insert("inputResponses", &answers);
        match v.get("requestState") {
            Some(s) => {
                let _ = params.insert("requestState", s);
            }
            None => {
                params.remove("requestState");
            }
        }
    }
    Err("the server kept asking for input".into())
}

fn meta() -> ClientMeta {
    ClientMeta {
        capabilities: client_capabilities(),
        client_info: None,
        log_level: None,
    }
}

async fn call_relaying(
    client: &McpClient,
    method: &str,
    params: Params,
    timeout: Duration,
    mode: Elicit,
) -> Result<Response, String> {
    let (sink, mut notes_rx, mut req_rx) = CallSink::bounded(None);
    let call = Call {
        method: method.into(),
        params: Some(params),
        timeout,
        sink: Some(sink),
        meta: Some(meta()),
    };
    let fut = client.call(call);
    tokio::pin!(fut);
    loop {
        tokio::select! {
            r = &mut fut => return r.map_err(|e| e.to_string()),
            Some(n) = notes_rx.recv() => eprintln!("{}", String::from_utf8_lossy(&Message::from(n).to_vec())),
            Some(sr) = req_rx.recv() => {
                let params = sr.request.params.as_ref().map(Params::to_value);
                let _ = sr.reply.send(answer(mode, sr.request.method.clone(), params).await);
            }
        }
    }
}
