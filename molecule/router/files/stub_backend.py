#!/usr/bin/env python3
"""A stand-in for the APIs behind the router: answers every path with JSON
naming the path it received and the host that answered. Like the APIs, it
serves TLS only and requires a client certificate of the platform's CA
(/etc/stub-backend/: certificate.pem, private-key.pem, ca.pem)."""

import json
import socket
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FILES = "/etc/stub-backend"


class Handler(BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {"path": self.path, "method": self.command, "host": socket.gethostname()}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = answer

    def log_message(self, *args):
        pass


class TLSServer(ThreadingHTTPServer):
    """The handshake runs in the request's thread, so a client that fails
    it (plain text, a foreign certificate) holds up no one else."""

    def __init__(self, address, handler, context):
        super().__init__(address, handler)
        self.context = context

    def finish_request(self, request, client_address):
        try:
            request = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)


if __name__ == "__main__":
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(f"{FILES}/certificate.pem", f"{FILES}/private-key.pem")
    context.load_verify_locations(f"{FILES}/ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    TLSServer(("0.0.0.0", 5000), Handler, context).serve_forever()
