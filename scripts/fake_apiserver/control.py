"""The control endpoint, /_fake/..., through which specs seed objects, compact
history and switch faults (no token: it is the specs' channel, not Kubernetes)."""

import json

from .faults import apply_faults, describe_faults
from .store import object_key, objects_of, resource_for, seed


class ControlMixin:
    """The Handler's /_fake/ requests."""

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
            if path == "/_fake/auth" and self.command == "POST":
                # Token rotation: from now on exactly these tokens are accepted.
                with store.lock:
                    self.server.tokens = set(document["tokens"])
                return self.send_json(200, {"tokens": len(self.server.tokens)})
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
