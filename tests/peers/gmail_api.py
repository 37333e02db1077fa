#!/usr/bin/env python3
"""A loopback stand-in for the Gmail API v1, for portcullis-mail's Gmail backend tests.

Gmail itself cannot be reached from the test machines. This server follows the resource
shapes Google publishes for https://gmail.googleapis.com/gmail/v1 closely enough that the same
client code works against both:

  users.getProfile, users.labels (list, create), users.messages (list with q / labelIds /
  maxResults / pageToken, get with format=raw|metadata|minimal, insert, send, modify, trash),
  users.drafts (create, list), users.threads (get).

What it copies from Google on purpose:
  * messages travel as `raw`: the whole RFC 5322 message, base64url;
  * a list holds only `{id, threadId}` and a `nextPageToken` while more remain; an empty list
    has no `messages` key at all, only `resultSizeEstimate: 0`;
  * errors are `{"error": {"code", "message", "errors": [{"message", "domain", "reason"}],
    "status"}}`, with 401 UNAUTHENTICATED for a missing or wrong token and 403
    PERMISSION_DENIED / insufficientPermissions for a token without the method's scope (the
    scopes each method accepts are those of Google's reference pages);
  * a sent message joins the thread named by `threadId` only if its References or
    In-Reply-To name a message of that thread and the subjects match, as Google documents;
    otherwise it starts a new thread;
  * lists leave out TRASH and SPAM unless `includeSpamTrash=true`; newest first.

What it simplifies: one user (`me` or the configured address); the q language covers
`from:`, `to:`, `subject:`, `is:unread`, `is:starred`, `in:`/`label:`, quoted phrases and bare
words; pages are at most --page-size long so that callers must follow `nextPageToken`.

Usage: gmail_api.py --port 0 --user alice@example.test --token TOKEN=SCOPE,SCOPE ...
                    [--introspect URL]
With `--introspect`, a token not given with --token is checked at that RFC 7662 endpoint (as
client `api` / `api-secret`, as Google checks its own tokens): active, and its `scope`.
Prints `listening on PORT` once ready. Loopback only.
"""

import argparse
import base64
import email
import email.policy
import email.utils
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

G = "https://www.googleapis.com/auth/"
FULL = "https://mail.google.com/"
# The scopes each method accepts, from Google's Gmail API reference pages.
READ = {FULL, G + "gmail.readonly", G + "gmail.modify", G + "gmail.metadata"}
SCOPES = {
    "profile": READ | {G + "gmail.compose"},
    "labels.list": READ | {G + "gmail.labels"},
    "labels.create": {FULL, G + "gmail.modify", G + "gmail.labels"},
    "messages.list": READ,
    "messages.get": READ,
    "messages.insert": {FULL, G + "gmail.modify", G + "gmail.insert"},
    "messages.send": {FULL, G + "gmail.modify", G + "gmail.compose", G + "gmail.send"},
    "messages.modify": {FULL, G + "gmail.modify"},
    "messages.trash": {FULL, G + "gmail.modify"},
    "drafts.create": {FULL, G + "gmail.modify", G + "gmail.compose"},
    "drafts.list": {FULL, G + "gmail.modify", G + "gmail.compose", G + "gmail.readonly"},
    "threads.get": READ,
}
SYSTEM_LABELS = ["INBOX", "SENT", "DRAFT", "TRASH", "SPAM", "STARRED", "UNREAD", "IMPORTANT"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ApiError(Exception):
    def __init__(self, code, status, reason, message, headers=None):
        super().__init__(message)
        self.code, self.status, self.reason, self.message = code, status, reason, message
        self.headers = headers or {}

    def body(self):
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
                "status": self.status,
            }
        }


def not_found():
    return ApiError(404, "NOT_FOUND", "notFound", "Requested entity was not found.")


def bad(message):
    return ApiError(400, "INVALID_ARGUMENT", "invalidArgument", message)


class Mailbox:
    def __init__(self, user):
        self.user = user
        self.lock = threading.Lock()
        self.messages = {}  # id -> dict(raw, labels, thread, internal)
        self.drafts = {}  # draft id -> message id
        self.labels = {name: {"id": name, "name": name, "type": "system"} for name in SYSTEM_LABELS}
        self.next_id = 0x18C0000000000000
        self.history = 1000

    def new_id(self):
        self.next_id += 0x1F3
        return format(self.next_id, "x")

    def parse(self, raw):
        return email.message_from_bytes(raw, policy=email.policy.default)

    def thread_for(self, raw, thread_id):
        """Google's rule: the named thread, if the message references one of its messages and
        the subjects match; else a new thread."""
        if not thread_id:
            return None
        members = [m for m in self.messages.values() if m["thread"] == thread_id]
        if not members:
            raise not_found()
        msg = self.parse(raw)
        refs = " ".join(str(msg.get(h, "")) for h in ("References", "In-Reply-To"))
        ids = {str(self.parse(m["raw"]).get("Message-ID", "")).strip() for m in members}
        subject = re.sub(r"^((re|fwd?):\s*)+", "", str(msg.get("Subject", "")), flags=re.I).strip().lower()
        first = re.sub(
            r"^((re|fwd?):\s*)+", "", str(self.parse(members[0]["raw"]).get("Subject", "")), flags=re.I
        ).strip().lower()
        if any(i and i in refs for i in ids) and subject == first:
            return thread_id
        return None

    def add(self, raw, labels, thread_id=None):
        mid = self.new_id()
        self.history += 1
        self.messages[mid] = {
            "raw": raw,
            "labels": list(dict.fromkeys(labels)),
            "thread": self.thread_for(raw, thread_id) or mid,
            "internal": int(time.time() * 1000) + len(self.messages),
            "history": self.history,
        }
        return mid

    def resource(self, mid, fmt="full", headers=()):
        m = self.messages.get(mid)
        if m is None:
            raise not_found()
        msg = self.parse(m["raw"])
        body = msg.get_body(preferencelist=("plain", "html"))
        snippet = re.sub(r"\s+", " ", body.get_content() if body else "")[:200].strip()
        out = {
            "id": mid,
            "threadId": m["thread"],
            "labelIds": m["labels"],
            "snippet": snippet,
            "sizeEstimate": len(m["raw"]),
            "historyId": str(m["history"]),
            "internalDate": str(m["internal"]),
        }
        if fmt == "raw":
            out["raw"] = b64url(m["raw"])
        elif fmt == "metadata":
            wanted = {h.lower() for h in headers}
            out["payload"] = {
                "partId": "",
                "mimeType": msg.get_content_type(),
                "filename": "",
                "headers": [
                    {"name": k, "value": str(v)} for k, v in msg.items() if not wanted or k.lower() in wanted
                ],
            }
        elif fmt == "minimal":
            pass
        else:
            out["payload"] = {
                "partId": "",
                "mimeType": msg.get_content_type(),
                "filename": "",
                "headers": [{"name": k, "value": str(v)} for k, v in msg.items()],
            }
        return out

    def matches(self, m, q):
        msg = self.parse(m["raw"])
        body = msg.get_body(preferencelist=("plain", "html"))
        text = " ".join(str(v) for _, v in msg.items()) + " " + (body.get_content() if body else "")
        for term in re.findall(r'(-?)(\w+:)?("[^"]*"|\S+)', q):
            neg, key, value = term[0] == "-", (term[1] or "").lower(), term[2].strip('"').lower()
            if key == "from:":
                ok = value in str(msg.get("From", "")).lower()
            elif key == "to:":
                ok = value in str(msg.get("To", "")).lower()
            elif key == "subject:":
                ok = value in str(msg.get("Subject", "")).lower()
            elif key == "is:":
                ok = {"unread": "UNREAD", "starred": "STARRED", "read": None}.get(value, "?") in m["labels"] or (
                    value == "read" and "UNREAD" not in m["labels"]
                )
            elif key in ("in:", "label:"):
                ok = any(self.labels.get(lid, {}).get("name", "").lower() == value or lid.lower() == value
                         for lid in m["labels"])
            else:
                ok = value in text.lower()
            if ok == neg:
                return False
        return True


def introspect(url, token):
    """The scopes of an active token, per the authorization server; None if inactive."""
    import urllib.parse
    import urllib.request

    req = urllib.request.Request(
        url,
        data=urllib.parse.urlencode({"token": token}).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(b"api:api-secret").decode()},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        answer = json.load(r)
    if not answer.get("active"):
        return None
    return set(answer.get("scope", "").split())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ESF"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("gmail_api: " + fmt % args + "\n")

    def reply(self, code, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise bad("Invalid JSON payload received.")

    def authorize(self, method):
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        scopes = self.server.tokens.get(token)
        if scopes is None and token and self.server.introspect:
            scopes = introspect(self.server.introspect, token)
        if scopes is None:
            raise ApiError(
                401,
                "UNAUTHENTICATED",
                "authError",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential.",
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        if not scopes & SCOPES[method]:
            raise ApiError(403, "PERMISSION_DENIED", "insufficientPermissions",
                           "Request had insufficient authentication scopes.",
                           {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", '
                                                'error="insufficient_scope", scope="%s"'
                                                % " ".join(sorted(SCOPES[method]))})
        self.server.calls.append(method)

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def route(self, verb):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        path = url.path
        box = self.server.box
        try:
            if verb == "GET" and path == "/_test/calls":
                # For tests: every API method called so far, in order.
                return self.reply(200, {"calls": self.server.calls})
            prefix = "/gmail/v1/users/"
            if not path.startswith(prefix):
                raise not_found()
            user, _, rest = path[len(prefix):].partition("/")
            if user not in ("me", box.user):
                raise ApiError(403, "PERMISSION_DENIED", "forbidden", "Delegation denied for " + box.user)
            parts = rest.split("/")
            with box.lock:
                self.reply(200, self.dispatch(verb, parts, query, box))
        except ApiError as e:
            self.reply(e.code, e.body(), e.headers)

    def dispatch(self, verb, parts, query, box):
        one = lambda k, d=None: query.get(k, [d])[0]
        if verb == "GET" and parts == ["profile"]:
            self.authorize("profile")
            return {"emailAddress": box.user, "messagesTotal": len(box.messages),
                    "threadsTotal": len({m["thread"] for m in box.messages.values()}),
                    "historyId": str(box.history)}
        if parts == ["labels"]:
            if verb == "GET":
                self.authorize("labels.list")
                return {"labels": list(box.labels.values())}
            self.authorize("labels.create")
            name = self.body().get("name")
            if not name:
                raise bad("Invalid label name")
            if any(l["name"].lower() == name.lower() for l in box.labels.values()):
                raise ApiError(409, "ALREADY_EXISTS", "alreadyExists", "Label name exists or conflicts")
            label = {"id": "Label_%d" % (len(box.labels) + 1), "name": name, "type": "user",
                     "messageListVisibility": "show", "labelListVisibility": "labelShow"}
            box.labels[label["id"]] = label
            return label
        if parts == ["messages"]:
            if verb == "POST":
                self.authorize("messages.insert")
                body = self.body()
                if "raw" not in body:
                    raise bad("'raw' RFC822 payload message string or uploading message via /upload/* URL required")
                labels = body.get("labelIds", [])
                for l in labels:
                    if l not in box.labels:
                        raise bad("Invalid label: " + l)
                mid = box.add(unb64url(body["raw"]), labels, body.get("threadId"))
                return box.resource(mid, "minimal")
            self.authorize("messages.list")
            q = one("q", "")
            label_ids = query.get("labelIds", [])
            try:
                size = min(int(one("maxResults", "100")), 500, self.server.page_size)
                start = int(one("pageToken", "0") or "0")
            except ValueError:
                raise bad("Invalid value")
            spam_trash = one("includeSpamTrash", "false") == "true"
            found = [
                (mid, m) for mid, m in box.messages.items()
                if all(l in m["labels"] for l in label_ids)
                and (spam_trash or not ({"TRASH", "SPAM"} & set(m["labels"])))
                and box.matches(m, q)
            ]
            found.sort(key=lambda x: x[1]["internal"], reverse=True)
            page = found[start:start + size]
            out = {"resultSizeEstimate": len(found)}
            if page:
                out["messages"] = [{"id": mid, "threadId": m["thread"]} for mid, m in page]
            if start + size < len(found):
                out["nextPageToken"] = str(start + size)
            return out
        if parts == ["messages", "send"] and verb == "POST":
            self.authorize("messages.send")
            body = self.body()
            if "raw" not in body:
                raise bad("'raw' RFC822 payload message string or uploading message via /upload/* URL required")
            raw = unb64url(body["raw"])
            msg = box.parse(raw)
            if not any(msg.get(h) for h in ("To", "Cc", "Bcc")):
                raise bad("Invalid To header")
            mid = box.add(raw, ["SENT"], body.get("threadId"))
            return box.resource(mid, "minimal")
        if len(parts) >= 2 and parts[0] == "messages":
            mid = parts[1]
            if not re.fullmatch(r"[0-9a-f]{1,20}", mid):
                raise bad("Invalid id value")
            if verb == "GET" and len(parts) == 2:
                self.authorize("messages.get")
                fmt = one("format", "full")
                if fmt not in ("full", "raw", "metadata", "minimal"):
                    raise bad("Invalid value at 'format'")
                return box.resource(mid, fmt, query.get("metadataHeaders", []))
            if verb == "POST" and parts[2:] == ["modify"]:
                self.authorize("messages.modify")
                body = self.body()
                m = box.messages.get(mid)
                if m is None:
                    raise not_found()
                for l in body.get("addLabelIds", []) + body.get("removeLabelIds", []):
                    if l not in box.labels:
                        raise bad("Invalid label: " + l)
                m["labels"] = [l for l in m["labels"] if l not in body.get("removeLabelIds", [])]
                m["labels"] += [l for l in body.get("addLabelIds", []) if l not in m["labels"]]
                return box.resource(mid, "minimal")
            if verb == "POST" and parts[2:] == ["trash"]:
                self.authorize("messages.trash")
                m = box.messages.get(mid)
                if m is None:
                    raise not_found()
                m["labels"] = [l for l in m["labels"] if l != "INBOX"] + ["TRASH"]
                return box.resource(mid, "minimal")
        if parts == ["drafts"]:
            if verb == "POST":
                self.authorize("drafts.create")
                message = self.body().get("message") or {}
                if "raw" not in message:
                    raise bad("Missing draft message")
                mid = box.add(unb64url(message["raw"]), ["DRAFT"], message.get("threadId"))
                did = "r" + mid
                box.drafts[did] = mid
                return {"id": did, "message": box.resource(mid, "minimal")}
            self.authorize("drafts.list")
            return {"drafts": [{"id": d, "message": {"id": m, "threadId": box.messages[m]["thread"]}}
                               for d, m in box.drafts.items()], "resultSizeEstimate": len(box.drafts)}
        if len(parts) == 2 and parts[0] == "threads" and verb == "GET":
            self.authorize("threads.get")
            members = sorted((m["internal"], mid) for mid, m in box.messages.items() if m["thread"] == parts[1])
            if not members:
                raise not_found()
            fmt = one("format", "full")
            msgs = [box.resource(mid, fmt, query.get("metadataHeaders", [])) for _, mid in members]
            return {"id": parts[1], "historyId": str(box.history), "messages": msgs}
        raise not_found()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--user", required=True)
    ap.add_argument("--token", action="append", default=[], help="TOKEN=SCOPE,SCOPE")
    ap.add_argument("--page-size", type=int, default=3)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--introspect")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.box = Mailbox(args.user)
    server.tokens = {}
    for t in args.token:
        token, _, scopes = t.partition("=")
        server.tokens[token] = {s if s.startswith("http") else G + s for s in scopes.split(",") if s}
    server.page_size = args.page_size
    server.verbose = args.verbose
    server.introspect = args.introspect
    server.calls = []
    print("listening on %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
