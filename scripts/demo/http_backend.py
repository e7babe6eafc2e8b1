"""The demo's HTTP backends: one process serving PORT on each loopback ADDRESS given, each
answering every GET with its own address, so the demo shows which backend a connection
reached. Prints "ready" once every address is bound (it exits with an error naming the
address when one cannot be). Usage: http_backend.py PORT ADDRESS... (loopback only)."""
import http.server
import sys
import threading


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


def main():
    port = int(sys.argv[1])
    servers = []
    for address in sys.argv[2:]:
        if not address.startswith("127."):
            sys.exit(f"http_backend: {address} is not a loopback address")
        try:
            servers.append(http.server.ThreadingHTTPServer((address, port), Handler))
        except OSError as err:
            sys.exit(f"http_backend: cannot listen on {address}:{port}: {err.strerror}")
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    servers[0].serve_forever()


main()
