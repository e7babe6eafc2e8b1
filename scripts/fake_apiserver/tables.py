"""Server-side printing: the meta.k8s.io Table a real server answers when a client asks
for one in Accept (kubectl get does), with the columns kubectl shows for each kind."""

import datetime
import json
import os
import re

import yaml

from .resources import now_timestamp

TABLE_VERSIONS = ("v1", "v1beta1")


def negotiate(accept):
    """The first representation in Accept that is served: ("table", version) or ("json",)."""
    for entry in (accept or "application/json").split(","):
        fields = [field.strip() for field in entry.split(";")]
        media, params = fields[0], dict(field.split("=", 1) for field in fields[1:] if "=" in field)
        if media not in ("application/json", "*/*", "application/*"):
            continue
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in TABLE_VERSIONS:
            return ("table", params["v"])
        if "as" not in params:
            return ("json",)
    return None


def human_duration(seconds):
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration, as the AGE column prints it."""
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return "%ds" % seconds
    minutes = seconds // 60
    if minutes < 10:
        return "%dm%ds" % (minutes, seconds % 60) if seconds % 60 else "%dm" % minutes
    if minutes < 180:
        return "%dm" % minutes
    hours = minutes // 60
    if hours < 8:
        return "%dh%dm" % (hours, minutes % 60) if minutes % 60 else "%dh" % hours
    if hours < 48:
        return "%dh" % hours
    if hours < 192:
        return "%dd%dh" % (hours // 24, hours % 24) if hours % 24 else "%dd" % (hours // 24)
    return "%dd" % (hours // 24)


def age(obj):
    created = (obj.get("metadata") or {}).get("creationTimestamp") or now_timestamp()
    then = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    return human_duration(int((datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()))


def or_none(text):
    return text if text else "<none>"


def service_ports(obj):
    ports = []
    for port in (obj.get("spec") or {}).get("ports") or []:
        node_port = ":%s" % port["nodePort"] if port.get("nodePort") else ""
        ports.append("%s%s/%s" % (port.get("port"), node_port, port.get("protocol", "TCP")))
    return or_none(",".join(ports))


def service_external(obj):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    addresses = list(spec.get("externalIPs") or [])
    for ingress in (status.get("loadBalancer") or {}).get("ingress") or []:
        addresses.append(ingress.get("ip") or ingress.get("hostname") or "")
    if spec.get("type") == "LoadBalancer" and not addresses:
        return "<pending>"
    if spec.get("type") == "ExternalName":
        return spec.get("externalName") or "<none>"
    return or_none(",".join(addresses))


def node_status(obj):
    ready = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    status = "Unknown" if ready is None else ("Ready" if ready.get("status") == "True" else "NotReady")
    if (obj.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    return status


def node_roles(obj):
    labels = (obj.get("metadata") or {}).get("labels") or {}
    prefix = "node-role.kubernetes.io/"
    return or_none(",".join(sorted(key[len(prefix):] for key in labels if key.startswith(prefix))))


def pod_ready(obj):
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    containers = (obj.get("spec") or {}).get("containers") or []
    return "%d/%d" % (sum(1 for s in statuses if s.get("ready")), len(containers))


def slice_endpoints(obj):
    addresses = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    if not addresses:
        return "<unset>"
    return ",".join(addresses[:3]) + (" + %d more..." % (len(addresses) - 3) if len(addresses) > 3 else "")


def spec_field(name):
    return lambda obj: (obj.get("spec") or {}).get(name) or "<none>"


CRD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "crds")


def json_path(path):
    """A cell from a printer column's jsonPath: the simple field paths the CRDs use
    (".a.b", with "\\." a dot inside a key); lists and maps print as JSON, as the API server's."""
    keys = [key.replace("\\.", ".") for key in re.split(r"(?<!\\)\.", path.lstrip("."))]

    def cell(obj):
        value = obj
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return None  # a missing field is a null cell, which kubectl prints as <none>
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return cell


def crd_columns(file):
    """The additionalPrinterColumns of a CRD in deploy/crds: one source for the columns."""
    with open(os.path.join(CRD_DIR, file)) as handle:
        crd = yaml.safe_load(handle)
    return [(c["name"], c["type"], c.get("priority", 0),
             age if c["jsonPath"] == ".metadata.creationTimestamp" else json_path(c["jsonPath"]))
            for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]


# (column name, type, priority, cell) per resource; priority 1 columns show with -o wide.
COLUMNS = {
    "services": [
        ("Type", "string", 0, lambda o: (o.get("spec") or {}).get("type") or "ClusterIP"),
        ("Cluster-IP", "string", 0, spec_field("clusterIP")),
        ("External-IP", "string", 0, service_external),
        ("Port(s)", "string", 0, service_ports),
        ("Age", "string", 0, age),
        ("Selector", "string", 1, lambda o: or_none(",".join(
            "%s=%s" % kv for kv in sorted(((o.get("spec") or {}).get("selector") or {}).items())))),
    ],
    "nodes": [
        ("Status", "string", 0, node_status),
        ("Roles", "string", 0, node_roles),
        ("Age", "string", 0, age),
        ("Version", "string", 0, lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")),
    ],
    "pods": [
        ("Ready", "string", 0, pod_ready),
        ("Status", "string", 0, lambda o: (o.get("status") or {}).get("reason") or (o.get("status") or {}).get(
            "phase") or "Pending"),
        ("Restarts", "string", 0, lambda o: str(sum(s.get("restartCount", 0) for s in (
            o.get("status") or {}).get("containerStatuses") or []))),
        ("Age", "string", 0, age),
        ("IP", "string", 1, lambda o: (o.get("status") or {}).get("podIP") or "<none>"),
        ("Node", "string", 1, spec_field("nodeName")),
    ],
    "endpointslices": [
        ("AddressType", "string", 0, lambda o: o.get("addressType", "")),
        ("Ports", "string", 0, lambda o: or_none(",".join(
            str(p.get("port")) for p in o.get("ports") or [])) if o.get("ports") else "<unset>"),
        ("Endpoints", "string", 0, slice_endpoints),
        ("Age", "string", 0, age),
    ],
    # the CRDs' additionalPrinterColumns, read from deploy/crds
    "localredirectpolicies": crd_columns("localredirectpolicies.yaml"),
    "balancingpolicies": crd_columns("balancingpolicies.yaml"),
}


def column_definitions(resource):
    name = {"name": "Name", "type": "string", "format": "name", "priority": 0,
            "description": "Name must be unique within a namespace."}
    return [name] + [{"name": column, "type": kind, "format": "", "priority": priority, "description": column}
                     for column, kind, priority, _ in COLUMNS[resource.plural]]


def row(resource, obj, include):
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    cells = [meta.get("name", "")]
    for _, _, _, cell in COLUMNS[resource.plural]:
        try:
            cells.append(cell(obj))
        except (AttributeError, TypeError, ValueError, KeyError):
            cells.append("<unknown>")  # a malformed object prints, as with a real printer's fallback
    entry = {"cells": cells}
    if include == "Object":
        entry["object"] = obj
    elif include != "None":
        entry["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
    return entry


def table(resource, objects, metadata, version, include):
    """A Table of objects; include is the includeObject parameter (None, Metadata, Object)."""
    return {"kind": "Table", "apiVersion": "meta.k8s.io/" + version, "metadata": metadata,
            "columnDefinitions": column_definitions(resource),
            "rows": [row(resource, obj, include) for obj in objects]}
