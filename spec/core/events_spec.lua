-- The ring buffer reader of balancing.core (docs/core-api.md, "Events"):
-- map_event read through a pinned map or a loaded datapath, each struct
-- balancing_event decoded into a Lua table. The specs that need a real event
-- send a real client through a VIP on loopback from a cgroup of their own.
local core_env = require("helpers.core_env")
local abi = require("balancing.abi")
local ffi = require("ffi")
local system = require("system")

local VIP = "127.10.0.9"
local SERVICE_ID = 4242

-- One client inside the cgroup: a backend listening on 127.0.0.1:PORT in the
-- same process, then a TCP connect or a UDP sendto to VIP:VPORT. Prints its
-- pid and "connected PEER_ADDR PEER_PORT reached BACKEND_ADDR BACKEND_PORT",
-- "sent" or "error ERRNO"; exit 3 when the
-- backend port is taken.
local CLIENT = [[
import errno, os, socket, sys
proto, vip, vport, bport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
server = socket.socket(socket.AF_INET, kind)
try:
    server.bind(("127.0.0.1", bport))
except OSError:
    sys.exit(3)
print("pid", os.getpid())
client = socket.socket(socket.AF_INET, kind)
client.settimeout(2)
try:
    if proto == "tcp":
        server.listen(8)
        client.connect((vip, vport))
        accepted, _ = server.accept()
        print("connected", *client.getpeername(), "reached", *accepted.getsockname())
    else:
        client.sendto(b"x", (vip, vport))
        print("sent")
except OSError as e:
    print("error", e.errno)
]]

-- Runs the client until it gets a free backend port; returns its pid and
-- its result line.
local function run_client(dp, cgroup, protocol, port, with_backend)
  math.randomseed(os.time())
  for _ = 1, 20 do
    local backend_port = math.random(20000, 60000)
    core_env.program_frontend(dp, { address = VIP, port = port, protocol = protocol:upper(), id = SERVICE_ID,
      backend_port = with_backend and backend_port or nil })
    local output = core_env.run_in_cgroup(cgroup, "exec python3 -c " .. core_env.quote(CLIENT) .. " "
      .. protocol .. " " .. VIP .. " " .. port .. " " .. backend_port)
    local pid = output:match("pid (%d+)")
    if pid then
      local result = output:match("(connected[^\n]*)") or output:match("(sent)") or output:match("(error %d+)")
      return tonumber(pid), result, backend_port
    end
  end
  error("no free backend port for the client")
end

-- The events of reader for the VIP, polled 50 ms at a time until at least
-- want (1) came, for at most attempts (20) polls.
local function events_for_vip(reader, want, attempts)
  local found = {}
  for _ = 1, attempts or 20 do
    for _, event in ipairs(assert(reader:poll(50))) do
      if event.original_address == VIP then
        found[#found + 1] = event
      end
    end
    if #found >= (want or 1) then
      return found
    end
  end
  return found
end

local function expect_events(events)
  assert.is_true(#events > 0, "no event for " .. VIP)
  return events[1]
end

describe("the event reader", function()
  after_each(core_env.close_all)

  it("opens the pinned map_event without loading programs and polls it", function()
    local env = core_env.open(pending)
    local dp, dir = env:load{ event_ring_bytes = 65536 }
    dp:close()

    local reader = assert(env.core.open_events(dir))
    env:on_close(function()
      reader:close()
    end)

    assert.is_number(reader:fd())
    assert.same({}, reader:poll(0))
  end)

  it("waits up to the timeout when there is nothing to read", function()
    local env = core_env.open(pending)
    local dp = env:load()
    local reader = assert(dp:events())
    env:on_close(function()
      reader:close()
    end)

    local started, cpu_before = system.monotime(), os.clock()
    assert.same({}, reader:poll(120))
    local waited = system.monotime() - started
    assert.is_true(waited >= 0.1 and waited < 2, "poll(120) returned after " .. waited .. " s")
    assert.is_true(os.clock() - cpu_before < 0.06, "waiting, not spinning")
  end)

  it("says which map when the pin directory holds no map_event", function()
    local env = core_env.open(pending)
    local dir = env:pin_dir()
    assert(require("lfs").mkdir(dir))

    local reader, err, code = env.core.open_events(dir)

    assert.is_nil(reader)
    assert.equals("open pinned ring buffer " .. dir .. "/map_event: No such file or directory", err)
    assert.equals(-2, code)
  end)

  it("refuses use once closed", function()
    local env = core_env.open(pending)
    local dp = env:load()
    local reader = assert(dp:events())

    assert.is_true(reader:close())

    local list, err, code = reader:poll(0)
    assert.is_nil(list)
    assert.equals("map_event reader is closed", err)
    assert.equals(-9, code)
  end)
end)

describe("events of real translations", function()
  after_each(core_env.close_all)

  local function attached(env)
    local dp = env:load()
    local cgroup = env:cgroup()
    assert(dp:attach(cgroup))
    local reader = assert(dp:events())
    env:on_close(function()
      reader:close()
    end)
    return dp, cgroup, reader
  end

  it("decodes a TCP connect to a VIP: client, frontend, backend, owner, time", function()
    local env = core_env.open(pending)
    local dp, cgroup, reader = attached(env)
    local before = os.time()

    local pid, result, backend_port = run_client(dp, cgroup, "tcp", 80, true)
    local event = expect_events(events_for_vip(reader))

    -- reached the backend, and getpeername4 showed the client the VIP
    assert.equals("connected " .. VIP .. " 80 reached 127.0.0.1 " .. backend_port, result)
    assert.is_true(event.success)
    assert.equals(abi.C.HOOK_CONNECT4, event.hook)
    assert.equals(6, event.protocol)
    assert.equals("TCP", event.protocol_name)
    assert.is_true(event.is_ipv4)
    assert.equals(VIP, event.original_address)
    assert.equals(80, event.original_port)
    assert.equals("127.0.0.1", event.nat_address)
    assert.equals(backend_port, event.nat_port)
    assert.equals(SERVICE_ID, event.service_id)
    assert.equals(abi.C.NAT_TYPE_SERVICE, event.nat_type)
    assert.equals(abi.C.NAT_MODE_CLUSTER_IP, event.nat_mode)
    assert.equals(abi.C.REASON_OK, event.reason)
    assert.is_false(event.redirect_hit_limit)
    assert.equals(pid, event.pid)
    assert.equals(env.core.netns_cookie(), event.netns_cookie)
    assert.equals(dp:links().connect4.cgroup_id, event.cgroup_id)
    assert.is_true(event.timestamp_ns > 0)
    assert.is_true(event.time >= before - 1 and event.time <= os.time() + 1,
      "time " .. event.time .. " is not now (" .. before .. ")")
  end)

  it("takes at most max events per poll and leaves the rest for the next", function()
    local env = core_env.open(pending)
    local dp, cgroup, reader = attached(env)
    run_client(dp, cgroup, "tcp", 80, true)
    run_client(dp, cgroup, "tcp", 80, true)

    local first = assert(reader:poll(0, 1))
    assert.equals(1, #first)
    assert.is_true(#assert(reader:poll(0)) >= 1)
  end)

  it("says how far behind it is, and takes events without decoding them when told to shed", function()
    local env = core_env.open(pending)
    local dp, cgroup, reader = attached(env)
    local pending_before, size = reader:backlog()
    run_client(dp, cgroup, "tcp", 80, true)
    run_client(dp, cgroup, "tcp", 80, true)

    local behind = reader:backlog()
    assert.equals(0, pending_before)
    assert.equals(4 * 1024 * 1024, size) -- (the default ring)
    assert.is_true(behind >= 2 * ffi.sizeof("struct balancing_event"), "backlog " .. behind)
    assert.equals(1, reader:discard(1))
    assert.is_true(reader:discard(0) >= 1)
    assert.equals(0, (reader:backlog()))
    assert.same({}, reader:poll(0))
  end)

  it("decodes a UDP sendmsg to a VIP", function()
    local env = core_env.open(pending)
    local dp, cgroup, reader = attached(env)

    local _, result, backend_port = run_client(dp, cgroup, "udp", 53, true)
    local event = expect_events(events_for_vip(reader))

    assert.equals("sent", result)
    assert.is_true(event.success)
    assert.equals(abi.C.HOOK_SENDMSG4, event.hook)
    assert.equals("UDP", event.protocol_name)
    assert.equals(53, event.original_port)
    assert.equals(backend_port, event.nat_port)
  end)

  -- The reader maps the ring's data once (core/events.c): a record that
  -- runs past the end of the ring continues at its start, and must be read
  -- whole. A one-page ring (88-byte records) goes round several times.
  it("reads records that wrap round the end of the ring whole", function()
    local env = core_env.open(pending)
    local dp = env:load{ event_ring_bytes = 4096 }
    local cgroup = env:cgroup()
    assert(dp:attach(cgroup))
    local reader = assert(dp:events())
    env:on_close(function()
      reader:close()
    end)
    local backend_port = 40053
    core_env.program_frontend(dp, { address = VIP, port = 53, protocol = "UDP", id = SERVICE_ID,
      backend_port = backend_port })
    local sender = "import os, socket\nprint('pid', os.getpid())\n"
      .. "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
      .. "for _ in range(10):\n    s.sendto(b'x', ('" .. VIP .. "', 53))\n"

    local read = 0
    for _ = 1, 12 do -- 120 records of 88 bytes: the 4 KiB ring about 2.6 times round
      local pid = tonumber(core_env.run_in_cgroup(cgroup, "exec python3 -c " .. core_env.quote(sender))
        :match("pid (%d+)"))
      local found = events_for_vip(reader, 10, 40)
      assert.equals(10, #found)
      for _, event in ipairs(found) do
        assert.equals(pid, event.pid)
        assert.equals(53, event.original_port)
        assert.equals("127.0.0.1", event.nat_address)
        assert.equals(backend_port, event.nat_port)
        assert.equals(SERVICE_ID, event.service_id)
        assert.equals(abi.C.HOOK_SENDMSG4, event.hook)
      end
      read = read + #found
    end
    assert.equals(120, read)
    assert.equals(0, (reader:backlog()))
  end)

  it("decodes a failed translation: no backend, no translated address", function()
    local env = core_env.open(pending)
    local dp, cgroup, reader = attached(env)

    local _, result = run_client(dp, cgroup, "tcp", 81, false)
    local event = expect_events(events_for_vip(reader))

    assert.equals("error 113", result) -- EHOSTUNREACH at once
    assert.is_false(event.success)
    assert.equals(abi.C.REASON_NO_BACKEND, event.reason)
    assert.equals(81, event.original_port)
    assert.equals("0.0.0.0", event.nat_address)
    assert.equals(0, event.nat_port)
    assert.equals(SERVICE_ID, event.service_id)
  end)
end)
