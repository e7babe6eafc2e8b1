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
import base64
import bisect
import copy
import datetime
import glob
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# --- Resources ----------------------------------------------------------------------
#
# One entry per resource served. The verbs, short names and scopes are those a real
# 1.28 server advertises; kubectl resolves `svc`, `no`, `lr` from them.

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


class Resource:
    def __init__(self, group, version, plural, singular, kind, namespaced, short_names,
                 custom=False, field_labels=()):
        self.group = group
        self.version = version
        self.plural = plural
        self.singular = singular
        self.kind = kind
        self.namespaced = namespaced
        self.short_names = short_names
        # Custom resources differ from built-in kinds in two rules we imitate: no
        # strategic merge patch (415), and no unconditional update (422 without a
        # resourceVersion).
        self.custom = custom
        # Field selectors: every kind has metadata.name and metadata.namespace; a
        # built-in kind adds its own (pods: spec.nodeName, ...). Anything else is 400.
        self.field_labels = ("metadata.name", "metadata.namespace") + tuple(field_labels)

    @property
    def api_version(self):
        return self.group + "/" + self.version if self.group else self.version

    def discovery(self):
        entry = {"name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
                 "kind": self.kind, "verbs": VERBS}
        if self.short_names:
            entry["shortNames"] = self.short_names
        return entry


RESOURCES = [
    Resource("", "v1", "services", "service", "Service", True, ["svc"],
             field_labels=("spec.clusterIP", "spec.type")),
    Resource("", "v1", "nodes", "node", "Node", False, ["no"], field_labels=("spec.unschedulable",)),
    Resource("", "v1", "pods", "pod", "Pod", True, ["po"],
             field_labels=("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                           "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                           "status.podIP", "status.nominatedNodeName")),
    Resource("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", True, [],
             field_labels=("addressType",)),
    Resource("balancing.elf.io", "v1beta1", "localredirectpolicies", "localredirectpolicy",
             "LocalRedirectPolicy", False, ["lr"], custom=True),
    Resource("balancing.elf.io", "v1beta1", "balancingpolicies", "balancingpolicy",
             "BalancingPolicy", False, ["bl"], custom=True),
]
CRD_GROUP = "balancing.elf.io"


class ApiError(Exception):
    """An error answered as a metav1.Status, with the reason a real server gives."""

    REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
               405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Expired",
               415: "UnsupportedMediaType", 422: "Invalid", 500: "InternalError"}

    def __init__(self, code, message, reason=None, details=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or self.REASONS.get(code, "Unknown")
        self.details = details

    def status(self):
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            status["details"] = self.details
        return status


def not_found(resource, name):
    return ApiError(404, '%s "%s" not found' % (group_resource(resource), name),
                    details={"name": name, "group": resource.group, "kind": resource.plural})


def conflict(resource, name, why):
    return ApiError(409, 'Operation cannot be fulfilled on %s "%s": %s' % (group_resource(resource), name, why),
                    details={"name": name, "group": resource.group, "kind": resource.plural})


def group_resource(resource):
    return resource.plural + ("." + resource.group if resource.group else "")


def now_timestamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Selectors ----------------------------------------------------------------------
#
# The label selector grammar of k8s.io/apimachinery/pkg/labels: `k=v`, `k==v`, `k!=v`,
# `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, comma-separated (commas inside parentheses
# belong to the set). `!=` and `notin` also match objects without the label, as in
# Kubernetes.

def split_requirements(text):
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip() != ""]


def parse_label_selector(text):
    requirements = []
    for part in split_requirements(text or ""):
        words = part.split()
        if len(words) >= 2 and words[1] in ("in", "notin"):
            values = part.split(None, 2)[2].strip()
            if not (values.startswith("(") and values.endswith(")")):
                raise ApiError(400, "unable to parse requirement: found '%s', expected: '('" % values)
            items = {item.strip() for item in values[1:-1].split(",") if item.strip()}
            requirements.append((words[1], words[0], items))
        elif part.startswith("!"):
            requirements.append(("!exists", part[1:].strip(), None))
        elif "!=" in part:
            key, value = part.split("!=", 1)
            requirements.append(("!=", key.strip(), value.strip()))
        elif "==" in part:
            key, value = part.split("==", 1)
            requirements.append(("=", key.strip(), value.strip()))
        elif "=" in part:
            key, value = part.split("=", 1)
            requirements.append(("=", key.strip(), value.strip()))
        else:
            requirements.append(("exists", part, None))
    for _, key, _ in requirements:
        if key == "" or any(char in key for char in " ()!=,"):
            raise ApiError(400, "unable to parse requirement: invalid label key %r" % key)
    return requirements


def labels_match(requirements, obj):
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for op, key, value in requirements:
        present = key in labels
        if op == "exists" and not present:
            return False
        if op == "!exists" and present:
            return False
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and present and labels.get(key) == value:
            return False
        if op == "in" and labels.get(key) not in value:
            return False
        if op == "notin" and present and labels.get(key) in value:
            return False
    return True


def parse_field_selector(text, resource):
    requirements = []
    for part in split_requirements(text or ""):
        if "!=" in part:
            key, value = part.split("!=", 1)
            op = "!="
        elif "==" in part:
            key, value = part.split("==", 1)
            op = "="
        elif "=" in part:
            key, value = part.split("=", 1)
            op = "="
        else:
            raise ApiError(400, 'invalid selector: \'%s\'; can\'t understand \'%s\'' % (text, part))
        key = key.strip()
        # A real server refuses a field it does not index for this kind.
        if key not in resource.field_labels:
            raise ApiError(400, '"%s" is not a known field selector: only "%s"' % (
                key, '", "'.join(resource.field_labels)))
        requirements.append((op, key, value.strip()))
    return requirements


def field_value(obj, path):
    value = obj
    for step in path.split("."):
        value = value.get(step) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def fields_match(requirements, obj):
    for op, key, value in requirements:
        actual = field_value(obj, key)
        if (op == "=") != (actual == value):
            return False
    return True


# --- Patches -------------------------------------------------------------------------

def merge_patch(target, patch):
    """RFC 7386 JSON merge patch: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def pointer_steps(pointer):
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ApiError(400, "json patch: invalid path %r" % pointer)
    return [step.replace("~1", "/").replace("~0", "~") for step in pointer[1:].split("/")]


def pointer_parent(doc, pointer):
    steps = pointer_steps(pointer)
    if not steps:
        raise ApiError(422, "json patch: the root cannot be the target of this operation")
    parent = doc
    for step in steps[:-1]:
        parent = pointer_child(parent, step, pointer)
    return parent, steps[-1]


def pointer_child(node, step, pointer):
    if isinstance(node, dict) and step in node:
        return node[step]
    if isinstance(node, list) and step.isdigit() and int(step) < len(node):
        return node[int(step)]
    raise ApiError(422, "json patch: doc is missing path: %s" % pointer)


def pointer_get(doc, pointer):
    node = doc
    for step in pointer_steps(pointer):
        node = pointer_child(node, step, pointer)
    return node


def pointer_remove(doc, pointer):
    parent, last = pointer_parent(doc, pointer)
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise ApiError(422, "json patch: unable to remove nonexistent key: %s" % pointer)


def pointer_add(doc, pointer, value, replace=False):
    parent, last = pointer_parent(doc, pointer)
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise ApiError(422, "json patch: replace operation does not apply: doc is missing key: %s" % pointer)
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = value
            else:
                parent.insert(int(last), value)
        else:
            raise ApiError(422, "json patch: index out of bounds: %s" % pointer)
    else:
        raise ApiError(422, "json patch: doc is missing path: %s" % pointer)


def json_patch(target, operations):
    """RFC 6902: add, remove, replace, move, copy, test; any failure refuses the whole patch."""
    if not isinstance(operations, list):
        raise ApiError(400, "json patch: the patch is not a list of operations")
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or not isinstance(operation.get("path"), str):
            raise ApiError(400, "json patch: an operation needs an op and a path")
        op, path = operation.get("op"), operation["path"]
        if op in ("add", "replace", "test") and "value" not in operation:
            raise ApiError(400, "json patch: %s operation has no value" % op)
        if op == "add":
            pointer_add(doc, path, copy.deepcopy(operation["value"]))
        elif op == "replace":
            pointer_add(doc, path, copy.deepcopy(operation["value"]), replace=True)
        elif op == "remove":
            pointer_remove(doc, path)
        elif op in ("move", "copy"):
            source = operation.get("from")
            if not isinstance(source, str):
                raise ApiError(400, "json patch: %s operation has no from" % op)
            value = pointer_remove(doc, source) if op == "move" else copy.deepcopy(pointer_get(doc, source))
            pointer_add(doc, path, value)
        elif op == "test":
            if pointer_get(doc, path) != operation["value"]:
                raise ApiError(422, "json patch: testing value %s failed" % path)
        else:
            raise ApiError(400, "json patch: unknown operation %r" % op)
    return doc


# Strategic merge patch merges some lists by a key instead of replacing them; the real
# server reads each field's patchMergeKey from the Go types. These are the fields of
# the kinds served here (a subset of the real rules; any other list is replaced).
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "volumes": "name", "env": "name", "volumeMounts": "mountPath", "imagePullSecrets": "name",
    "conditions": "type", "addresses": "type", "taints": "key", "ownerReferences": "uid",
}


def merge_key_for(path, key):
    if key == "ports":
        # Service.spec.ports merge by port; a container's ports by containerPort.
        return "port" if path == ("spec",) else "containerPort"
    return MERGE_KEYS.get(key)


def strategic_merge_patch(target, patch, path=()):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {key: copy.deepcopy(value) for key, value in patch.items() if key != "$patch"}
    if directive == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # $retainKeys, $setElementOrder: ordering hints we do not need
        if value is None:
            result.pop(key, None)
            continue
        merge_key = merge_key_for(path, key)
        if isinstance(value, list) and merge_key and isinstance(result.get(key), list):
            result[key] = merge_list(result[key], value, merge_key, path + (key,))
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value, path + (key,))
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    return result


def merge_list(current, patch, merge_key, path):
    result = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise ApiError(422, "strategic merge patch: list item without its merge key %r" % merge_key)
        index = next((i for i, old in enumerate(result)
                      if isinstance(old, dict) and old.get(merge_key) == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append({k: v for k, v in item.items() if k != "$patch"})
        else:
            result[index] = strategic_merge_patch(result[index], item, path)
    return result


PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
}


# --- The store ---------------------------------------------------------------------------
#
# One global resourceVersion for every change, as etcd's revision: a LIST answers at the
# current one, a WATCH resumes after one, a continue token reads at the one its first
# page was served at. History keeps each change with the object before it, so a past
# state can be rebuilt; a compaction forgets history, and what needs it gets 410.

class Event:
    __slots__ = ("rv", "resource", "type", "obj", "prev")

    def __init__(self, rv, resource, type_, obj, prev):
        self.rv, self.resource, self.type, self.obj, self.prev = rv, resource, type_, obj, prev


def object_key(obj):
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name"))


class Store:
    def __init__(self, history_limit):
        self.lock = threading.Condition()
        self.objects = {resource.plural: {} for resource in RESOURCES}
        # The first change is 1001 rather than 1, so that a client that confuses
        # "0" (any version) with a real one is caught.
        self.rv = 1000
        self.history = []      # Event, oldest first
        self.history_rvs = []  # their rvs, for bisect
        self.compacted = self.rv  # history for rv <= compacted is gone
        self.history_limit = history_limit

    def record(self, resource, type_, obj, prev):
        """Under the lock: a change has been made at self.rv; remember and wake watchers."""
        self.history.append(Event(self.rv, resource, type_, obj, prev))
        self.history_rvs.append(self.rv)
        if len(self.history) > self.history_limit:
            self.compact_to(self.history_rvs[len(self.history) - self.history_limit - 1])
        self.lock.notify_all()

    def compact_to(self, rv):
        """Under the lock: forget history up to rv (etcd compaction)."""
        rv = min(rv, self.rv)
        cut = bisect.bisect_right(self.history_rvs, rv)
        del self.history[:cut]
        del self.history_rvs[:cut]
        self.compacted = max(self.compacted, rv)
        self.lock.notify_all()

    def events_after(self, rv):
        return self.history[bisect.bisect_right(self.history_rvs, rv):]

    def state_at(self, resource, rv):
        """Under the lock: the objects of a resource as they were at rv (None if compacted)."""
        if rv < self.compacted:
            return None
        current = self.objects[resource.plural]
        later = [event for event in self.events_after(rv) if event.resource is resource]
        if not later:
            return current
        state = dict(current)
        for event in reversed(later):
            key = object_key(event.obj)
            if event.prev is None:
                state.pop(key, None)
            else:
                state[key] = event.prev
        return state

    def put(self, resource, obj, create_only=False):
        """Under the lock: create or replace; stamps uid, creationTimestamp, resourceVersion."""
        key = object_key(obj)
        table = self.objects[resource.plural]
        prev = table.get(key)
        if prev is not None and create_only:
            raise ApiError(409, '%s "%s" already exists' % (group_resource(resource), key[1]),
                           reason="AlreadyExists",
                           details={"name": key[1], "group": resource.group, "kind": resource.plural})
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if prev is not None:
            # uid and creationTimestamp belong to the object's life, not to an update.
            meta["uid"] = prev["metadata"]["uid"]
            meta["creationTimestamp"] = prev["metadata"]["creationTimestamp"]
            old_rv = prev["metadata"].get("resourceVersion")
            meta["resourceVersion"] = old_rv
            if obj == prev:
                # A real server writes nothing for an update that changes nothing: no
                # new resourceVersion, no watch event.
                return prev
        else:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now_timestamp())
        if resource.custom:
            meta["generation"] = (prev or {}).get("metadata", {}).get("generation", 0) + (
                1 if prev is None or obj.get("spec") != prev.get("spec") else 0)
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        table[key] = obj
        self.record(resource, "ADDED" if prev is None else "MODIFIED", obj, prev)
        return obj

    def delete(self, resource, key):
        table = self.objects[resource.plural]
        prev = table.pop(key)
        self.rv += 1
        # The DELETED event carries the object at the deletion's resourceVersion.
        gone = copy.deepcopy(prev)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self.record(resource, "DELETED", gone, prev)
        return gone


# --- Faults ----------------------------------------------------------------------------

class Faults:
    """What the specs switched on through POST /_fake/faults (guarded by the store lock)."""

    def __init__(self):
        self.fail_count = 0       # answer this many API requests with fail_code
        self.fail_code = 500
        self.fail_match = ""      # only requests whose path contains this
        self.stall = False        # open watches send nothing, not even bookmarks
        self.drop_epoch = 0       # bumped to cut every open watch
        self.malformed = []       # one-shot: [{"resource": plural, "in": "list"|"watch"}]


def malformed_object(resource):
    # Valid JSON, a well-formed event, but an object no decoder of the kind accepts:
    # metadata is not an object and spec is a string.
    return {"apiVersion": resource.api_version, "kind": resource.kind,
            "metadata": "malformed", "spec": "not an object"}


# --- HTTP ------------------------------------------------------------------------------

def parse_bool(text):
    # strconv.ParseBool, as the server parses watch=, allowWatchBookmarks=
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False", ""):
        return False
    raise ApiError(400, "invalid boolean %r" % text)


def encode_continue(rv, start):
    # Shaped like the real token (base64 JSON with the list's rv and the next key);
    # clients must treat it as opaque.
    text = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start[0] + "/" + start[1] + "\u0000"})
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_continue(token):
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        namespace, name = data["start"].rstrip("\u0000").split("/", 1)
        return int(data["rv"]), (namespace, name)
    except Exception:
        raise ApiError(400, "continue key is not valid: %s" % token)


class Handler(BaseHTTPRequestHandler):
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
        self.close_after = False
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
        token = self.server.options.token
        if token is None:
            return
        header = self.headers.get("Authorization", "")
        if header != "Bearer " + token:
            # A missing or wrong token is 401 with a Status, whatever the path.
            raise ApiError(401, "Unauthorized")

    def injected_failure(self, path):
        store, faults = self.server.store, self.server.faults
        with store.lock:
            if faults.fail_count > 0 and faults.fail_match in path:
                faults.fail_count -= 1
                code = faults.fail_code
            else:
                return
        raise ApiError(code, "fake-apiserver: injected failure (POST /_fake/faults)")

    def check_accept(self):
        # Only JSON is served: an Accept that allows nothing JSON is 406, as a real
        # server without a matching serializer answers. Protobuf-first lists that
        # also name JSON (client-go's default) get JSON.
        accept = self.headers.get("Accept", "")
        if not accept:
            return
        types = [part.split(";")[0].strip() for part in accept.split(",")]
        if not any(t in ("application/json", "*/*", "application/*", "application/json-patch+json")
                   for t in types):
            raise ApiError(406, "only the following media types are accepted: application/json")

    # -- responses

    def send_json(self, code, document, headers=None):
        data = json.dumps(document).encode()
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
            return self.send_json(200, obj)
        if method == "PUT":
            return self.update(resource, key, self.json_body(body))
        if method == "PATCH":
            return self.patch(resource, key, body)
        if method == "DELETE":
            return self.delete(resource, key, body)
        raise ApiError(405, "the server does not allow this method on the requested resource")

    # -- writes

    def check_body(self, resource, obj, namespace, name=None):
        if not isinstance(obj, dict):
            raise ApiError(400, "the body of the request is not a JSON object")
        if obj.get("kind") != resource.kind or obj.get("apiVersion") != resource.api_version:
            raise ApiError(400, "the API version in the data (%s) and kind (%s) do not match the expected %s %s" % (
                obj.get("apiVersion"), obj.get("kind"), resource.api_version, resource.kind))
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            raise ApiError(400, "metadata must be an object")
        if resource.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiError(400, "the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = namespace
        elif meta.get("namespace"):
            meta.pop("namespace")  # a cluster-scoped object has none; the server drops it
        if name is not None and meta.get("name") != name:
            raise ApiError(400, "the name of the object (%s) does not match the name on the URL (%s)" % (
                meta.get("name"), name))

    def create(self, resource, namespace, obj):
        self.check_body(resource, obj, namespace)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not meta.get("name"):
            raise ApiError(422, "%s.%s \"\" is invalid: metadata.name: Required value: name or generateName is required" % (
                resource.kind, resource.api_version), details={"kind": resource.kind})
        if meta.get("resourceVersion"):
            # The real registry refuses it with exactly this (as an internal error).
            raise ApiError(500, "resourceVersion should not be set on objects to be created")
        with self.server.store.lock:
            created = self.server.store.put(resource, obj, create_only=True)
        self.send_json(201, created)

    def update(self, resource, key, obj):
        self.check_body(resource, obj, key[0] or None, key[1])
        with self.server.store.lock:
            self.write_checked(resource, key, obj, from_update=True)

    def patch(self, resource, key, body):
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        kind = PATCH_TYPES.get(content_type)
        # Custom resources have no Go struct to read merge keys from, so a real server
        # refuses strategic merge on them with 415.
        if kind is None or (kind == "strategic" and resource.custom):
            accepted = ["application/json-patch+json", "application/merge-patch+json"]
            if not resource.custom:
                accepted.append("application/strategic-merge-patch+json")
            raise ApiError(415, "the body of the request was in an unknown format - accepted media types include: "
                           + ", ".join(accepted))
        patch = self.json_body(body)
        if kind in ("merge", "strategic") and not isinstance(patch, dict):
            raise ApiError(400, "the patch is not a JSON object")
        with self.server.store.lock:
            current = self.server.store.objects[resource.plural].get(key)
            if current is None:
                raise not_found(resource, key[1])
            if kind == "merge":
                patched = merge_patch(current, patch)
            elif kind == "strategic":
                patched = strategic_merge_patch(current, patch)
            else:
                patched = json_patch(current, patch)
            self.check_body(resource, patched, key[0] or None, key[1])
            self.write_checked(resource, key, patched, from_update=False)

    def write_checked(self, resource, key, obj, from_update):
        """Under the lock: the precondition rules of an update, then the write."""
        store = self.server.store
        current = store.objects[resource.plural].get(key)
        if current is None:
            raise not_found(resource, key[1])
        wanted = obj["metadata"].get("resourceVersion")
        if not wanted and from_update and resource.custom:
            # Custom resources do not allow an unconditional update.
            raise ApiError(422, '%s.%s "%s" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
                           'must be specified for an update' % (resource.kind, resource.group, key[1]),
                           details={"name": key[1], "group": resource.group, "kind": resource.kind})
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            # A resourceVersion in the body (or left by a patch) is a precondition.
            raise conflict(resource, key[1], "the object has been modified; please apply your changes "
                           "to the latest version and try again")
        meta = obj["metadata"]
        for field in ("uid",):
            if meta.get(field) not in (None, current["metadata"].get(field)):
                raise conflict(resource, key[1], "Precondition failed: UID in precondition: %s, UID in object meta: %s"
                               % (meta.get(field), current["metadata"].get(field)))
        self.send_json(200, store.put(resource, obj))

    def delete(self, resource, key, body):
        options = self.json_body(body) if body else {}
        preconditions = (options or {}).get("preconditions") or {}
        with self.server.store.lock:
            current = self.server.store.objects[resource.plural].get(key)
            if current is None:
                raise not_found(resource, key[1])
            meta = current["metadata"]
            if preconditions.get("resourceVersion") not in (None, meta["resourceVersion"]):
                raise conflict(resource, key[1], "Precondition failed: ResourceVersion in precondition: %s, "
                               "ResourceVersion in object meta: %s" % (preconditions["resourceVersion"],
                                                                       meta["resourceVersion"]))
            if preconditions.get("uid") not in (None, meta["uid"]):
                raise conflict(resource, key[1], "Precondition failed: UID in precondition: %s, UID in object meta: %s"
                               % (preconditions["uid"], meta["uid"]))
            gone = self.server.store.delete(resource, key)
        self.send_json(200, gone)

    # -- reads

    def selectors(self, resource):
        return (parse_label_selector(self.query.get("labelSelector")),
                parse_field_selector(self.query.get("fieldSelector"), resource))

    def list(self, resource, namespace):
        labels, fields = self.selectors(resource)
        try:
            limit = int(self.query.get("limit") or 0)
        except ValueError:
            raise ApiError(400, "limit must be an integer")
        token = self.query.get("continue")
        store, faults = self.server.store, self.server.faults
        with store.lock:
            if token:
                # A continued list reads at its first page's resourceVersion, so that the
                # pages make one consistent list; compacted → 410 Expired.
                list_rv, start = decode_continue(token)
                state = store.state_at(resource, list_rv)
                if state is None:
                    raise ApiError(410, "The provided continue parameter is too old to display a consistent list "
                                   "result. You can start a new list without the continue parameter, or use the "
                                   "continue token in this response to retrieve the remainder of the results. "
                                   "Continuing with the provided token results in an inconsistent list - objects "
                                   "that were created, modified, or deleted between the time the first chunk was "
                                   "returned and now may show up in the list.", reason="Expired")
            else:
                list_rv, start, state = store.rv, None, store.objects[resource.plural]
            keys = sorted(k for k in state if (namespace is None or k[0] == namespace) and (start is None or k > start))
            items, last_key, next_key = [], None, None
            for key in keys:
                obj = state[key]
                if not (labels_match(labels, obj) and fields_match(fields, obj)):
                    continue
                if limit and len(items) == limit:
                    # one more match exists: the next page starts after the last key served
                    next_key = last_key
                    break
                items.append(obj)
                last_key = key
            remaining = sum(1 for k in keys if next_key is not None and k > next_key)
            if any(f["resource"] == resource.plural and f["in"] == "list" for f in faults.malformed):
                faults.malformed = [f for f in faults.malformed
                                    if not (f["resource"] == resource.plural and f["in"] == "list")]
                items = items[:1] + [malformed_object(resource)] + items[1:]
            metadata = {"resourceVersion": str(list_rv)}
            if next_key is not None:
                metadata["continue"] = encode_continue(list_rv, next_key)
                if not labels and not fields:
                    # only without selectors does a real server know the count
                    metadata["remainingItemCount"] = remaining
            document = {"kind": resource.kind + "List", "apiVersion": resource.api_version,
                        "metadata": metadata, "items": items}
            data = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def watch(self, resource, namespace):
        labels, fields = self.selectors(resource)
        options = self.server.options
        try:
            timeout = float(self.query.get("timeoutSeconds") or options.watch_timeout)
        except ValueError:
            raise ApiError(400, "timeoutSeconds must be a number")
        bookmarks = parse_bool(self.query.get("allowWatchBookmarks", ""))
        rv_text = self.query.get("resourceVersion", "")
        store, faults = self.server.store, self.server.faults

        def matches(obj):
            if obj is None:
                return False
            ns = (obj.get("metadata") or {}).get("namespace") or ""
            return (namespace is None or ns == namespace) and labels_match(labels, obj) and fields_match(fields, obj)

        try:
            start_rv = int(rv_text) if rv_text not in ("", "0") else None
        except ValueError:
            raise ApiError(400, "resourceVersion: Invalid value: %r: must be a number" % rv_text)

        watcher = {"resource": resource.plural, "inject": []}
        with store.lock:
            pending = []
            if start_rv is None:
                # "" or "0": the current state as ADDED events, then changes.
                cursor = store.rv
                for key in sorted(store.objects[resource.plural]):
                    obj = store.objects[resource.plural][key]
                    if matches(obj):
                        pending.append({"type": "ADDED", "object": obj})
                too_old = None
            else:
                cursor = start_rv
                too_old = start_rv < store.compacted and store.compacted
            drop_epoch = faults.drop_epoch
            for fault in list(faults.malformed):
                if fault["resource"] == resource.plural and fault["in"] == "watch":
                    faults.malformed.remove(fault)
                    watcher["inject"].append(fault)
            self.server.watchers.append(watcher)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()
            self.wfile.flush()
            if too_old is not None and too_old is not False:
                # As the real server does: 200, then one ERROR event with a 410 Status.
                self.send_event({"type": "ERROR", "object": ApiError(
                    410, "too old resource version: %d (%d)" % (start_rv, too_old), reason="Expired").status()})
                return self.end_chunks()
            self.stream_events(resource, matches, cursor, pending, timeout, bookmarks, drop_epoch, watcher)
        finally:
            with store.lock:
                self.server.watchers.remove(watcher)

    def stream_events(self, resource, matches, cursor, pending, timeout, bookmarks, drop_epoch, watcher):
        store, faults, options = self.server.store, self.server.faults, self.server.options
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + options.bookmark_interval
        while True:
            with store.lock:
                while True:
                    if faults.drop_epoch != drop_epoch:
                        # Cut the connection without the terminating chunk: a lost
                        # connection, not a watch the server ended.
                        self.close_connection = True
                        try:
                            self.connection.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        return
                    now = time.monotonic()
                    if now >= deadline:
                        break
                    if not faults.stall:
                        if cursor < store.compacted:
                            # history this (stalled) watch still needed was compacted
                            pending.append({"type": "ERROR", "object": ApiError(
                                410, "too old resource version: %d (%d)" % (cursor, store.compacted),
                                reason="Expired").status()})
                            deadline = now
                            break
                        for event in store.events_after(cursor):
                            cursor = event.rv
                            if event.resource is not resource:
                                continue
                            # With a selector, an object that starts or stops matching is
                            # ADDED or DELETED for this watch, as the watch cache reports it.
                            now_in, was_in = matches(event.obj), matches(event.prev)
                            if event.type == "DELETED":
                                if was_in:
                                    pending.append({"type": "DELETED", "object": event.obj})
                            elif now_in:
                                pending.append({"type": "MODIFIED" if was_in else "ADDED", "object": event.obj})
                            elif was_in:
                                pending.append({"type": "DELETED", "object": event.obj})
                        cursor = max(cursor, store.rv)
                        for _ in watcher["inject"]:
                            pending.append({"type": "MODIFIED", "object": malformed_object(resource)})
                        watcher["inject"] = []
                        if bookmarks and now >= next_bookmark and not pending:
                            pending.append({"type": "BOOKMARK", "object": {
                                "kind": resource.kind, "apiVersion": resource.api_version,
                                "metadata": {"resourceVersion": str(cursor)}}})
                            next_bookmark = now + options.bookmark_interval
                        if pending:
                            break
                    wake = deadline if not bookmarks or faults.stall else min(deadline, next_bookmark)
                    store.lock.wait(max(0.0, min(wake - now, 0.5)))
            for event in pending:
                self.send_event(event)
            pending = []
            if time.monotonic() >= deadline:
                return self.end_chunks()

    def send_event(self, event):
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- the control endpoint (no auth: it is the specs' channel, not Kubernetes)

    def control(self, path, body):
        store, faults = self.server.store, self.server.faults
        try:
            document = json.loads(body.decode() or "{}")
        except ValueError as error:
            return self.send_json(400, {"error": "not JSON: %s" % error})
        try:
            if path == "/_fake/faults" and self.command == "POST":
                with store.lock:
                    apply_faults(faults, document, store, self.server.watchers)
                    state = describe_faults(faults)
                return self.send_json(200, state)
            if path == "/_fake/objects" and self.command == "POST":
                with store.lock:
                    stored = [seed(store, obj) for obj in objects_of(document)]
                return self.send_json(200, {"resourceVersion": str(store.rv), "items": stored})
            if path == "/_fake/objects" and self.command == "DELETE":
                with store.lock:
                    for obj in objects_of(document):
                        resource = resource_for(obj)
                        key = object_key(obj)
                        if key in store.objects[resource.plural]:
                            store.delete(resource, key)
                return self.send_json(200, {"resourceVersion": str(store.rv)})
            if path == "/_fake/compact" and self.command == "POST":
                with store.lock:
                    store.compact_to(int(document.get("resourceVersion") or store.rv))
                    return self.send_json(200, {"compacted": str(store.compacted)})
            if path == "/_fake/state" and self.command == "GET":
                with store.lock:
                    return self.send_json(200, {
                        "resourceVersion": str(store.rv), "compacted": str(store.compacted),
                        "openWatches": [w["resource"] for w in self.server.watchers],
                        "faults": describe_faults(faults)})
            if path == "/_fake/requests" and self.command == "GET":
                with store.lock:
                    return self.send_json(200, {"requests": list(self.server.request_log)})
        except (ValueError, KeyError, TypeError) as error:
            return self.send_json(400, {"error": str(error)})
        return self.send_json(404, {"error": "no such control: %s %s" % (self.command, path)})


def apply_faults(faults, document, store, watchers):
    if "failRequests" in document:
        faults.fail_count = int(document["failRequests"])
        faults.fail_code = int(document.get("failCode", 500))
        faults.fail_match = str(document.get("failPath", ""))
    if "stallWatches" in document:
        faults.stall = bool(document["stallWatches"])
    if document.get("dropWatches"):
        faults.drop_epoch += 1
    if "malformed" in document:
        fault = document["malformed"]
        if fault.get("in") not in ("list", "watch"):
            raise ValueError('malformed: "in" must be "list" or "watch"')
        resource = next(r for r in RESOURCES if r.plural == fault["resource"])
        fault = {"resource": resource.plural, "in": fault["in"]}
        open_watches = [w for w in watchers if w["resource"] == resource.plural]
        if fault["in"] == "watch" and open_watches:
            for watcher in open_watches:
                watcher["inject"].append(fault)
        else:
            faults.malformed.append(fault)  # for the next list or watch
    if document.get("clear"):
        faults.fail_count, faults.stall, faults.malformed = 0, False, []
    store.lock.notify_all()


def describe_faults(faults):
    return {"failRequests": faults.fail_count, "failCode": faults.fail_code, "failPath": faults.fail_match,
            "stallWatches": faults.stall, "dropEpoch": faults.drop_epoch, "malformed": faults.malformed}


def objects_of(document):
    if isinstance(document, dict) and isinstance(document.get("items"), list):
        items = [obj for obj in document["items"] if obj]
        kind = document.get("kind") or ""
        if kind.endswith("List") and kind != "List":
            # A typed list (ServiceList) may leave its items' kind and apiVersion out.
            for obj in items:
                obj.setdefault("kind", kind[:-len("List")])
                obj.setdefault("apiVersion", document.get("apiVersion"))
        return items
    if isinstance(document, list):
        return [obj for obj in document if obj]
    return [document] if document else []


def resource_for(obj):
    for resource in RESOURCES:
        if obj.get("kind") == resource.kind and obj.get("apiVersion") == resource.api_version:
            return resource
    raise ValueError("no resource served for apiVersion %r kind %r" % (obj.get("apiVersion"), obj.get("kind")))


def seed(store, obj):
    """Under the lock: create or replace an object as the specs give it (no precondition)."""
    resource = resource_for(obj)
    obj = copy.deepcopy(obj)
    meta = obj.setdefault("metadata", {})
    if not meta.get("name"):
        raise ValueError("an object without metadata.name")
    if resource.namespaced:
        meta.setdefault("namespace", "default")
    else:
        meta.pop("namespace", None)
    meta.pop("resourceVersion", None)
    return store.put(resource, obj)


def group_document(group):
    version = next(r.version for r in RESOURCES if r.group == group)
    gv = {"groupVersion": group + "/" + version, "version": version}
    return {"name": group, "versions": [gv], "preferredVersion": gv}


def version_document(text):
    major, minor = text.lstrip("v").split(".")[:2]
    return {"major": major, "minor": minor, "gitVersion": text, "gitCommit": "0" * 40,
            "gitTreeState": "clean", "buildDate": "2024-01-01T00:00:00Z", "goVersion": "go1.21.0",
            "compiler": "gc", "platform": "linux/amd64"}


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


# --- Start ---------------------------------------------------------------------------------

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


def make_test_certs(directory):
    """A throwaway CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, cwd=directory)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=fake-apiserver test CA",
        "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(directory, "ext.cnf"), "w") as file:
        file.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "ext.cnf", "-out", "server.crt")
    return os.path.join(directory, "server.crt"), os.path.join(directory, "server.key"), \
        os.path.join(directory, "ca.crt")


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
    parser.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (else 401)")
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
        cert, key = options.cert, options.key
        if not cert:
            cert_dir = tempfile.mkdtemp(prefix="fake-apiserver-")
            cert, key, ca = make_test_certs(cert_dir)
            if options.ca_file:
                shutil.copyfile(ca, options.ca_file + ".tmp")
                os.rename(options.ca_file + ".tmp", options.ca_file)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
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
