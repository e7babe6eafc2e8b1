#!/usr/bin/env python3
"""A fake kube-apiserver for the specs: the real protocol, on 127.0.0.1 only.

    scripts/fake_apiserver.py [--tls] [--token T] [--port-file PATH] [--manifests DIR] ...

It serves what the agent reads (Services, EndpointSlices, Nodes, Pods and the two
balancing.elf.io CRDs) as strictly as a real API server does on what it implements:
discovery, LIST with limit/continue and selectors, WATCH with bookmarks and timeouts,
410 Gone after a compaction, bearer-token auth, the patch types a real server accepts
per kind (strategic merge is 415 on custom resources), resourceVersion preconditions
(409). Specs steer it through a control endpoint, /_fake/..., on the same port: seed
objects, compact history, switch faults on (drop or stall watches, 500s, a malformed
object). docs/testing.md lists the options and the control endpoint.

Python 3 standard library only (PyYAML for *.yaml manifests when it is installed).
"""

import argparse
import glob
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

# The package next to this script; -I (isolated mode) leaves the script's directory
# out of sys.path. No __pycache__ in the source tree.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True

from fake_apiserver.server import Server  # noqa: E402
from fake_apiserver.store import Store, objects_of, seed  # noqa: E402


def load_manifests(directory):
    """Objects from *.json, *.yaml, *.yml (one object, a List, or several YAML documents)."""
    objects = []
    for path in sorted(glob.glob(os.path.join(directory, "*"))):
        if path.endswith(".json"):
            with open(path) as file:
                documents = [json.load(file)]
        elif path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError:
                sys.exit("fake-apiserver: %s needs PyYAML (python3-yaml)" % path)
            with open(path) as file:
                documents = list(yaml.safe_load_all(file))
        else:
            continue
        for document in documents:
            objects.extend(objects_of(document))
    return objects


# P-256 keys: made in milliseconds (RSA 2048 takes a visible part of a spec's start).
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def make_test_certs(directory):
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, made
    with the openssl CLI. The client's subject is what a real server's x509 authenticator
    reads: CN the user, O the group."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, cwd=directory)

    def issue(name, subject, extensions):
        run("req", *EC_KEY, "-subj", subject, "-keyout", name + ".key", "-out", name + ".csr")
        with open(os.path.join(directory, name + ".cnf"), "w") as file:
            file.write(extensions)
        run("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", name + ".cnf", "-out", name + ".crt")
        return os.path.join(directory, name + ".crt"), os.path.join(directory, name + ".key")

    run("req", "-x509", *EC_KEY, "-days", "2", "-subj", "/CN=fake-apiserver test CA",
        "-keyout", "ca.key", "-out", "ca.crt")
    server = issue("server", "/CN=127.0.0.1",
                   "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    client = issue("client", "/O=system:masters/CN=spec-user", "extendedKeyUsage=clientAuth\n")
    return server, client, os.path.join(directory, "ca.crt")


def copy_atomically(source, path):
    shutil.copyfile(source, path + ".tmp")
    os.rename(path + ".tmp", path)


def write_atomically(path, text):
    temporary = path + ".tmp"
    with open(temporary, "w") as file:
        file.write(text)
    os.rename(temporary, path)


def parse_options(argv):
    parser = argparse.ArgumentParser(description="A fake kube-apiserver for the specs, on 127.0.0.1 only.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: an ephemeral one)")
    parser.add_argument("--port-file", help="write the port here once listening")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS")
    parser.add_argument("--cert", help="server certificate (PEM); with --key; default: made with a test CA")
    parser.add_argument("--key", help="server private key (PEM)")
    parser.add_argument("--ca-file", help="write the test CA's certificate here (with --tls and no --cert)")
    parser.add_argument("--token", action="append",
                        help="accept 'Authorization: Bearer TOKEN' (repeatable; without any, no authentication)")
    parser.add_argument("--client-ca", help="also accept client certificates signed by this CA (with --tls)")
    parser.add_argument("--client-cert", metavar="PREFIX",
                        help="with --tls and no --cert: write a client certificate of the test CA to PREFIX.crt "
                        "and its key to PREFIX.key, and accept it")
    parser.add_argument("--manifests", help="seed objects from *.json, *.yaml, *.yml in this directory")
    parser.add_argument("--no-crds", action="store_true", help="serve without the balancing.elf.io group (404)")
    parser.add_argument("--bookmark-interval", type=float, default=60.0,
                        help="seconds between BOOKMARK events on a watch that allows them (default 60)")
    parser.add_argument("--watch-timeout", type=float, default=1800.0,
                        help="a watch without timeoutSeconds ends after this long (default 1800)")
    parser.add_argument("--history", type=int, default=100000,
                        help="changes kept for watches and continue tokens before older ones are compacted")
    parser.add_argument("--kube-version", default="v1.28.15", help="gitVersion answered on /version")
    parser.add_argument("--exit-with-parent", type=int, metavar="PID",
                        help="exit when this process is gone (a spec runner that died)")
    parser.add_argument("--verbose", action="store_true", help="log each request on stderr")
    options = parser.parse_args(argv)
    if bool(options.cert) != bool(options.key):
        parser.error("--cert and --key go together")
    return options


def main(argv):
    options = parse_options(argv)
    store = Store(options.history)
    if options.manifests:
        if not os.path.isdir(options.manifests):
            print("fake-apiserver: no manifest directory %s" % options.manifests, file=sys.stderr)
            return 2
        try:
            with store.lock:
                for obj in load_manifests(options.manifests):
                    seed(store, obj)
        except (ValueError, OSError) as error:
            print("fake-apiserver: %s: %s" % (options.manifests, error), file=sys.stderr)
            return 2

    cert_dir = None
    context = None
    if options.tls:
        cert, key, client_ca = options.cert, options.key, options.client_ca
        if not cert:
            cert_dir = tempfile.mkdtemp(prefix="fake-apiserver-")
            (cert, key), client, ca = make_test_certs(cert_dir)
            if options.ca_file:
                copy_atomically(ca, options.ca_file)
            if options.client_cert:
                copy_atomically(client[0], options.client_cert + ".crt")
                copy_atomically(client[1], options.client_cert + ".key")
                client_ca = ca
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        if client_ca:
            # As a real server: a client certificate is optional, and one that does not
            # verify fails the handshake; a verified one authenticates the request.
            context.verify_mode = ssl.CERT_OPTIONAL
            context.load_verify_locations(client_ca)
        # HTTP/1.1 only: Go clients would speak HTTP/2 if offered it.
        context.set_alpn_protocols(["http/1.1"])

    server = Server(options, store, context)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if options.exit_with_parent:
        def watch_parent():
            while True:
                try:
                    os.kill(options.exit_with_parent, 0)
                except ProcessLookupError:
                    return stop()
                except PermissionError:
                    pass
                time.sleep(1)
        threading.Thread(target=watch_parent, daemon=True).start()

    print("fake-apiserver: listening on %s://127.0.0.1:%d" % ("https" if context else "http", server.port),
          file=sys.stderr, flush=True)
    if options.port_file:
        write_atomically(options.port_file, "%d\n" % server.port)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if cert_dir:
            shutil.rmtree(cert_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
