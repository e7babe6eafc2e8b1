"""A passive WATCH of EndpointSlices for scripts/bench/agent: when the fake API
server delivered each change to a watcher, to split the agent's end-to-end
latency into the server's part and the agent's.

    agent_watch.py BASE_URL CA TOKEN RESOURCE_VERSION

Prints "ready" once the watch is open, then for each event one line
"<CLOCK_MONOTONIC seconds> <address> ..." with the event's 100.64.x.y
addresses (the benchmark's changes put one new such address in a slice).
Runs until killed (its parent's trap ends it by pid)."""

import http.client
import re
import ssl
import sys
import time
import urllib.parse

ADDRESS = re.compile(rb'"(100\.(?:6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.\d+\.\d+)"')


def main(base, ca, token, rv):
    url = urllib.parse.urlsplit(base)
    context = ssl.create_default_context(cafile=ca)
    connection = http.client.HTTPSConnection(url.hostname, url.port, context=context)
    connection.request("GET", "/apis/discovery.k8s.io/v1/endpointslices?watch=1&resourceVersion=%s" % rv,
                       headers={"Authorization": "Bearer " + token})
    response = connection.getresponse()
    if response.status != 200:
        print("watch answered %d" % response.status, flush=True)
        return 1
    print("ready", flush=True)
    while True:
        line = response.readline()
        now = time.monotonic()
        if not line:
            return 0
        addresses = [m.decode() for m in ADDRESS.findall(line)]
        print("%.6f %s" % (now, " ".join(addresses)), flush=True)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
