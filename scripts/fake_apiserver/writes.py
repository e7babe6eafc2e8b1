"""CREATE, UPDATE, PATCH, DELETE with the preconditions of a real server."""

import uuid

from .patches import PATCH_TYPES, json_patch, merge_patch, strategic_merge_patch
from .resources import ApiError, conflict, not_found


class WritesMixin:
    """The Handler's write requests."""

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
