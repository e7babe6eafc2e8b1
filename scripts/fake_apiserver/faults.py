"""The faults the specs switch on at run time (POST /_fake/faults)."""

from .resources import RESOURCES


class Faults:
    """What the specs switched on through POST /_fake/faults (guarded by the store lock)."""

    def __init__(self):
        self.fail_count = 0       # answer this many API requests with fail_code
        self.fail_code = 500
        self.fail_match = ""      # only requests whose path contains this
        self.stall = False        # open watches send nothing, not even bookmarks
        self.stall_requests = False  # other API requests get no answer until released
        self.drop_epoch = 0       # bumped to cut every open watch
        self.malformed = []       # one-shot: [{"resource": plural, "in": "list"|"watch"}]


def malformed_object(resource):
    # Valid JSON, a well-formed event, but an object no decoder of the kind accepts:
    # metadata is not an object and spec is a string.
    return {"apiVersion": resource.api_version, "kind": resource.kind,
            "metadata": "malformed", "spec": "not an object"}


def apply_faults(faults, document, store, watchers):
    if "failRequests" in document:
        faults.fail_count = int(document["failRequests"])
        faults.fail_code = int(document.get("failCode", 500))
        faults.fail_match = str(document.get("failPath", ""))
    if "stallWatches" in document:
        faults.stall = bool(document["stallWatches"])
    if "stallRequests" in document:
        faults.stall_requests = bool(document["stallRequests"])
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
        faults.fail_count, faults.stall, faults.stall_requests, faults.malformed = 0, False, False, []
    store.lock.notify_all()


def describe_faults(faults):
    return {"failRequests": faults.fail_count, "failCode": faults.fail_code, "failPath": faults.fail_match,
            "stallWatches": faults.stall, "stallRequests": faults.stall_requests, "dropEpoch": faults.drop_epoch, "malformed": faults.malformed}
