#!/usr/bin/env python3
"""A raw-JSON MCP server over Streamable HTTP (2025-11-25, JSON responses, no GET stream), on
127.0.0.1 only, for the tests that must see exactly which HTTP headers reach an upstream.

Usage: raw_http_server.py PORT. Its one tool, `headers`, returns the request headers it got (and the path, as `:path`).
"""

import json
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=None, headers=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply(405, headers={"allow": "POST, DELETE"})

    def do_DELETE(self):
        self.reply(200)

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        msg = json.loads(self.rfile.read(length) or b"{}")
        rid = msg.get("id")
        method = msg.get("method")
        if rid is None:
            return self.reply(202)
        if method == "initialize":
            result = {
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "raw-http", "version": "1.0.0"},
            }
            return self.reply(200, {"jsonrpc": "2.0", "id": rid, "result": result}, {"mcp-session-id": uuid.uuid4().hex})
        if method == "tools/list":
            tool = {"name": "headers", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": True}}
            return self.reply(200, {"jsonrpc": "2.0", "id": rid, "result": {"tools": [tool]}})
        if method == "tools/call":
            seen = {k.lower(): v for k, v in self.headers.items()}
            seen[":path"] = self.path
            result = {"content": [{"type": "text", "text": json.dumps(seen, sort_keys=True)}]}
            return self.reply(200, {"jsonrpc": "2.0", "id": rid, "result": result})
        error = {"code": -32601, "message": f"method not found: {method}"}
        return self.reply(200, {"jsonrpc": "2.0", "id": rid, "error": error})


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
