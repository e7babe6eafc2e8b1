"""One HTTP request: authentication, injected failures, routing, responses."""

import json
import ssl
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler

from .control import ControlMixin
from .reads import ReadsMixin, parse_bool
from .resources import ApiError, group_document, not_found, version_document
from .tables import negotiate, table
from .writes import WritesMixin


class Handler(ReadsMixin, WritesMixin, ControlMixin, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-apiserver"

    def log_message(self, format, *args):
        if self.server.options.verbose:
            sys.stderr.write("fake-apiserver: %s\n" % (format % args))

    # Every method goes through one dispatcher.
    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        self.query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        path = url.path.rstrip("/") or "/"
        body = self.read_body()
        try:
            if path.startswith("/_fake/"):
                return self.control(path, body)
            self.server.log_request_line(self.command, self.path)
            self.authenticate()
            self.injected_failure(path)
            self.check_accept()
            self.route(path, body)
        except ApiError as error:
            self.send_json(error.code, error.status())
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(length) if length else b""

    def json_body(self, body):
        try:
            return json.loads(body.decode() or "null")
        except ValueError as error:
            raise ApiError(400, "the body of the request is not valid JSON: %s" % error)

    def authenticate(self):
        with self.server.store.lock:
            tokens = self.server.tokens
        if tokens is None:
            return
        # A client certificate that verified against --client-ca authenticates, as the
        # real server's x509 authenticator does.
        if isinstance(self.connection, ssl.SSLSocket) and self.connection.getpeercert():
            return
        header = self.headers.get("Authorization", "")
        if not (header.startswith("Bearer ") and header[len("Bearer "):] in tokens):
            # A missing or wrong token is 401 with a Status, whatever the path.
            raise ApiError(401, "Unauthorized")

    def injected_failure(self, path):
        store, faults = self.server.store, self.server.faults
        with store.lock:
            # A hung server: the request is read and never answered while the fault is
            # on (a client's own timeout must end it); watches stall apart (stallWatches).
            while faults.stall_requests and not parse_bool(self.query.get("watch", "")):
                store.lock.wait(0.5)
            if faults.fail_count > 0 and faults.fail_match in path:
                faults.fail_count -= 1
                code = faults.fail_code
            else:
                return
        raise ApiError(code, "fake-apiserver: injected failure (POST /_fake/faults)")

    def check_accept(self):
        # JSON, or a meta.k8s.io Table of it: an Accept that allows neither is 406, as
        # a real server without a matching serializer answers. Protobuf-first lists
        # that also name JSON (client-go's default) get JSON.
        self.representation = negotiate(self.headers.get("Accept"))
        if self.representation is None:
            raise ApiError(406, "only the following media types are accepted: application/json, "
                           "application/json;as=Table;v=v1;g=meta.k8s.io")

    def printed(self, resource, objects, metadata):
        """objects as a Table when the client asked for one (kubectl get), else None."""
        if self.representation[0] != "table":
            return None
        return table(resource, objects, metadata, self.representation[1],
                     self.query.get("includeObject", "Metadata"))

    # -- responses

    def send_json(self, code, document, headers=None):
        # ended by a newline, as kube-apiserver's (Go's json.Encoder) are: a
        # client that splits a non-200 watch answer into lines sees one
        data = json.dumps(document).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_text(self, code, text):
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # -- routing

    def route(self, path, body):
        options = self.server.options
        parts = path.strip("/").split("/")
        if path in ("/healthz", "/readyz", "/livez"):
            return self.send_text(200, "ok")
        if self.command != "GET" and len(parts) < 3:
            raise ApiError(405, "the server does not allow this method on the requested resource")
        if path == "/version":
            return self.send_json(200, version_document(options.kube_version))
        if path == "/api":
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                        "serverAddressByClientCIDRs": [
                                            {"clientCIDR": "0.0.0.0/0",
                                             "serverAddress": "127.0.0.1:%d" % self.server.port}]})
        if path == "/apis":
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                        "groups": [group_document(g) for g in self.server.groups()]})
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 2:
            if parts[1] not in self.server.groups():
                raise ApiError(404, "the server could not find the requested resource")
            if len(parts) == 2:
                return self.send_json(200, dict(group_document(parts[1]), kind="APIGroup", apiVersion="v1"))
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "the server could not find the requested resource")
        served = [r for r in self.server.resources() if r.group == group and r.version == version]
        if not served:
            raise ApiError(404, "the server could not find the requested resource")
        if not rest:
            return self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                        "groupVersion": served[0].api_version,
                                        "resources": [r.discovery() for r in served]})
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        by_plural = {r.plural: r for r in served}
        resource = by_plural.get(rest[0])
        # A cluster-scoped kind under /namespaces/X, a subresource, or a deeper path
        # does not exist here.
        if resource is None or len(rest) > 2 or (namespace is not None and not resource.namespaced):
            raise ApiError(404, "the server could not find the requested resource")
        name = rest[1] if len(rest) == 2 else None
        self.resource_request(resource, namespace, name, body)

    def resource_request(self, resource, namespace, name, body):
        method = self.command
        if name is None:
            if method == "GET":
                if parse_bool(self.query.get("watch", "")):
                    return self.watch(resource, namespace)
                return self.list(resource, namespace)
            if method == "POST":
                if resource.namespaced and namespace is None:
                    raise ApiError(405, "the server does not allow this method on the requested resource")
                return self.create(resource, namespace, self.json_body(body))
            raise ApiError(405, "the server does not allow this method on the requested resource")
        if resource.namespaced and namespace is None:
            raise ApiError(404, "the server could not find the requested resource")
        key = (namespace or "", name)
        if method == "GET":
            with self.server.store.lock:
                obj = self.server.store.objects[resource.plural].get(key)
            if obj is None:
                raise not_found(resource, name)
            printed = self.printed(resource, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]})
            return self.send_json(200, printed or obj)
        if method == "PUT":
            return self.update(resource, key, self.json_body(body))
        if method == "PATCH":
            return self.patch(resource, key, body)
        if method == "DELETE":
            return self.delete(resource, key, body)
        raise ApiError(405, "the server does not allow this method on the requested resource")
