"""A demo HTTP backend: answers every GET with its own address, so the demo shows which
backend a connection reached. Usage: http_backend.py ADDRESS PORT (loopback only)."""
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from backend {self.server.server_address[0]}:{self.server.server_address[1]}\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
