"""The three patch types of a real server: JSON merge patch (RFC 7386), JSON patch
(RFC 6902) and strategic merge patch (built-in kinds only)."""

import copy

from .resources import ApiError


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
