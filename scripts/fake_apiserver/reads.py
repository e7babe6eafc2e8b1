"""LIST and WATCH, the reads a controller lives on."""

import base64
import json
import select
import socket
import time

from .faults import malformed_object
from .resources import ApiError
from .selectors import fields_match, labels_match, parse_field_selector, parse_label_selector


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


class ReadsMixin:
    """The Handler's list and watch requests."""

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
        if self.query.get("resourceVersion") == "0" and not token:
            # "0" is "any version": a real server answers from its watch cache, which
            # does not page — the whole list, no continue token, whatever the limit.
            limit = 0
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
            document = self.printed(resource, items, metadata) or {
                "kind": resource.kind + "List", "apiVersion": resource.api_version,
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
                too_old = store.compacted if start_rv < store.compacted else None
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
            if too_old is not None:
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
                    if self.peer_gone():
                        return
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
                self.send_event(event, resource)
            pending = []
            if time.monotonic() >= deadline:
                return self.end_chunks()

    def peer_gone(self):
        """Whether the client has closed a watch: it sends nothing after its request, so
        anything readable is its end (EOF, or TLS close_notify). The watch then ends
        at once, not at its next write, and /_fake/state counts only live watches."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        return bool(readable)

    def send_event(self, event, resource=None):
        if resource is not None and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
            # a watch of Tables: each event's object is a Table of that one object
            meta = event["object"].get("metadata")
            rv = meta.get("resourceVersion", "") if isinstance(meta, dict) else ""
            event = dict(event, object=self.printed(resource, [event["object"]], {"resourceVersion": rv})
                         or event["object"])
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
