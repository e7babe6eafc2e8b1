"""The resources served, and the errors a real server answers with.

One Resource per kind: verbs, short names and scope as a real 1.28 server
advertises them (kubectl resolves `svc`, `no`, `lr` from them), plus the two rules
in which custom resources differ from built-in kinds.
"""

import datetime


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


def group_document(group):
    version = next(r.version for r in RESOURCES if r.group == group)
    gv = {"groupVersion": group + "/" + version, "version": version}
    return {"name": group, "versions": [gv], "preferredVersion": gv}


def version_document(text):
    major, minor = text.lstrip("v").split(".")[:2]
    return {"major": major, "minor": minor, "gitVersion": text, "gitCommit": "0" * 40,
            "gitTreeState": "clean", "buildDate": "2024-01-01T00:00:00Z", "goVersion": "go1.21.0",
            "compiler": "gc", "platform": "linux/amd64"}
