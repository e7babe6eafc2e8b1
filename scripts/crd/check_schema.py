"""The OpenAPI v3 part of a CRD's schema checked with a JSON Schema library
(python3-jsonschema): types, required fields, enums, patterns, bounds, formats.
Unknown fields are errors, as kubectl's default strict field validation makes
them (the API server would otherwise prune them silently).

    python3 scripts/crd/check_schema.py < {"schema": openAPIV3Schema, "objects": [...]}
    → {"results": [{"errors": ["path: message", ...]}]}
"""
import copy
import json
import sys

import jsonschema

OPENAPI_ONLY = ("x-kubernetes-", "nullable")


def to_json_schema(schema):
    out = {}
    for key, value in schema.items():
        if key.startswith(OPENAPI_ONLY):
            continue
        if key == "properties":
            value = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            value = to_json_schema(value)
        out[key] = value
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def main():
    data = json.load(sys.stdin)
    schema = to_json_schema(copy.deepcopy(data["schema"]))
    # what every object has beside the CRD's own schema
    schema["properties"].update({"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                 "metadata": {"type": "object"}})
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    results = []
    for obj in data["objects"]:
        errors = ["%s: %s" % (".".join(str(p) for p in error.absolute_path), error.message)
                  for error in validator.iter_errors(obj)]
        results.append({"errors": errors})
    json.dump({"results": results}, sys.stdout)


if __name__ == "__main__":
    main()
