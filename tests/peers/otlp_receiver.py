#!/usr/bin/env python3
"""An OTLP/HTTP receiver for the tests: accepts POSTs on 127.0.0.1 (any free port), answers
200 with an empty protobuf body, and prints one line per request:
`POST <path> <content-type> <base64 body>`. Prints `listening <port>` first."""

import base64
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        kind = self.headers.get("content-type", "")
        print(f"POST {self.path} {kind} {base64.b64encode(body).decode()}", flush=True)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
