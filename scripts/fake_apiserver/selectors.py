"""Label and field selectors, as k8s.io/apimachinery parses and applies them."""

from .resources import ApiError


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
