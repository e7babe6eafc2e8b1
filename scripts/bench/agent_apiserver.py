"""scripts/fake_apiserver.py for scripts/bench/agent, with TCP_NODELAY on every
accepted connection, as a real kube-apiserver has (Go sets it on every TCP
connection). Without it the fake server's small writes wait for the peer's
delayed ACK (Nagle): a response written as headers then body, or a watch
event written while the previous one is unacknowledged, is held about 40 ms,
and that delay — the fake server's, not the agent's — would be most of what an
end-to-end latency measures. Same options as scripts/fake_apiserver.py."""

import importlib.util
import os
import socket
import sys

sys.dont_write_bytecode = True
SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
spec = importlib.util.spec_from_file_location("fake_apiserver_main", os.path.join(SCRIPTS, "fake_apiserver.py"))
fake = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fake)  # puts scripts/ on sys.path: the fake_apiserver package imports

from fake_apiserver.server import Server  # noqa: E402

accept = Server.get_request


def get_request(self):
    connection, address = accept(self)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection, address


Server.get_request = get_request

if __name__ == "__main__":
    sys.exit(fake.main(sys.argv[1:]))
