"""The listening server: 127.0.0.1 only, a thread per connection, TLS optional."""

import ssl
from http.server import ThreadingHTTPServer

from .faults import Faults
from .handler import Handler
from .resources import CRD_GROUP, RESOURCES


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, options, store, tls_context):
        self.options = options
        self.store = store
        self.faults = Faults()
        self.watchers = []
        self.request_log = []
        self.tls_context = tls_context
        # The bearer tokens accepted now (POST /_fake/auth rotates them); None: no
        # authentication at all.
        client_certs = options.client_ca or options.client_cert
        self.tokens = set(options.token or []) if (options.token or client_certs) else None
        super().__init__(("127.0.0.1", options.port), Handler)
        self.port = self.server_address[1]

    def groups(self):
        groups = ["discovery.k8s.io"]
        if not self.options.no_crds:
            groups.append(CRD_GROUP)
        return groups

    def resources(self):
        return [r for r in RESOURCES if not (self.options.no_crds and r.group == CRD_GROUP)]

    def log_request_line(self, method, path):
        with self.store.lock:
            self.request_log.append({"method": method, "path": path})
            del self.request_log[:-1000]

    def finish_request(self, request, client_address):
        # The TLS handshake runs in the request's thread, so that a client that
        # connects and says nothing blocks only itself.
        if self.tls_context is None:
            return super().finish_request(request, client_address)
        try:
            request.settimeout(30)
            tls = self.tls_context.wrap_socket(request, server_side=True)
            tls.settimeout(None)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()
