-- scripts/debugging_capture.sh, the capture behind docs/debugging.md: every
-- step of the operator checklist runs for real (the agent following the fake
-- API server, real clients in a test cgroup, bpftool, the trace file, kubectl,
-- inspect), the events come out of `grep "formatted ebpf event" | jq .` as
-- JSON, and nothing is left behind — pins, cgroups, scratch directory,
-- processes. Root only, like the other end-to-end specs.
local cjson = require("cjson")
local core_env = require("helpers.core_env")
local scratch = require("helpers.scratch")

local SCRIPT = "scripts/debugging_capture.sh"
-- the script takes 15-20 s here; the bound only stops a hung run (its trap cleans up)
local TIMEOUT_SECONDS = 120

local function exists(path)
  return os.execute("test -e " .. scratch.quote(path)) == 0
end

-- true while pid is a live process whose command line contains marker
local function alive(pid, marker)
  local stat = scratch.read_file("/proc/" .. pid .. "/stat")
  if not stat or stat:match("^%d+ %b() (%u)") == "Z" then
    return false
  end
  return ((scratch.read_file("/proc/" .. pid .. "/cmdline") or ""):gsub("%z", " ")):find(marker, 1, true) ~= nil
end

-- The steps of the output: { number, title, command, output, ok }.
local function steps_of(output)
  local steps = {}
  for number, title, command, body, verdict in output:gmatch(
    "\n### step (%d+): ([^\n]*)\n~# ([^\n]*)\n(.-)%-%-%- step %d+: ([^\n]*)") do
    steps[#steps + 1] = { number = tonumber(number), title = title, command = command, output = body,
      ok = verdict == "ok" }
  end
  return steps
end

describe("scripts/debugging_capture.sh", function()
  it("runs every step of the checklist, prints the events as JSON, and leaves nothing behind", function()
    local reason = core_env.unavailable_reason()
    if reason then
      if os.getenv("BALANCING_REQUIRE_E2E") == "1" then
        error("BALANCING_REQUIRE_E2E=1 and the debugging capture cannot run: " .. reason)
      end
      pending("needs root and BPF: " .. reason)
      return
    end
    local status, output, stderr = scratch.run(string.format("timeout %d %s", TIMEOUT_SECONDS, SCRIPT))
    local context = "\n" .. output:sub(-3000) .. "\nstderr: " .. stderr
    assert.equals(0, status, "exit status" .. context)

    local steps = steps_of(output)
    local count, failed = output:match("\ndebugging capture: (%d+) steps, (%d+) failed\n")
    assert.equals("0", failed, context)
    assert.equals(tonumber(count), #steps, "every step parsed" .. context)
    assert.is_true(#steps >= 30, "the checklist's steps" .. context)
    local by_command = {}
    for i, step in ipairs(steps) do
      assert.equals(i, step.number)
      assert.is_true(step.ok, "step " .. i .. " (" .. step.title .. ") failed:\n" .. step.output)
      by_command[#by_command + 1] = step.command
    end
    local commands = table.concat(by_command, "\n")
    for _, expected in ipairs({ "bpftool map show pinned", "bpftool cgroup tree", "bpftool prog show id",
      "setMapData configure bpfLogLevel verbose", "grep \"formatted ebpf event\"", "kubectl get nodes -o jsonpath",
      "kubectl get balancingpolicies", "kubectl get localredirectpolicies", "showMapData all",
      "traceMapData service demo web", "traceMapData localRedirect demo node-local-dns",
      "traceMapData balancing demo api" }) do
      assert.matches(expected, commands, 1, true)
    end

    local function step_titled(prefix)
      for _, step in ipairs(steps) do
        if step.title:sub(1, #prefix) == prefix then
          return step
        end
      end
      error("no step " .. prefix .. context)
    end

    -- the pins: the contract's maps
    local pins = step_titled("the pinned maps").output
    for _, map in ipairs({ "map_affinity", "map_backend", "map_configure", "map_event", "map_nat_record",
      "map_node_ip", "map_node_proxy_ip", "map_service" }) do
      assert.matches("\n" .. map .. "\n", "\n" .. pins, 1, true)
    end
    -- the four programs in the cgroup tree
    local tree = step_titled("the programs attached").output
    for _, hook in ipairs({ "connect4", "sendmsg4", "recvmsg4", "getpeername4" }) do
      assert.matches("balancing_" .. hook, tree, 1, true)
    end
    -- the trace lines of the clients, at the verbose level
    local trace = step_titled("the programs' trace lines").output
    assert.matches("bpf_trace_printk: balancing: frontend 127.10.0.1:80", trace, 1, true)
    assert.matches("bpf_trace_printk: balancing: 127.10.0.9:80 rejected", trace, 1, true)

    -- the jq step printed JSON events: each a whole JSON object with the contract's fields
    local events_text = step_titled("the translation events").output
    local pipe = assert(io.popen("jq -c . 2>&1 <<'JSON_END'\n" .. events_text .. "\nJSON_END"))
    local compact = pipe:read("*a")
    assert.is_true(pipe:close(), "jq could not read the step's output as JSON:\n" .. compact)
    local events, types, failures = 0, {}, 0
    for line in compact:gmatch("[^\n]+") do
      local event = cjson.decode(line)
      assert.equals("formatted ebpf event", event.msg)
      assert.equals("client-6c9f7", event.clientPodName)
      events = events + 1
      types[event.natType] = true
      failures = failures + (event.isSuccess and 0 or 1)
    end
    assert.is_true(events >= 6, events .. " events" .. context)
    assert.same({ service = true, localRedirect = true, balancing = true }, types)
    assert.equals(1, failures)

    -- the annotations the agent wrote, read back with kubectl
    assert.matches('"balancing.elf.io/nodeId": "%d+"', step_titled("the nodes' annotations").output)
    assert.matches('"balancing.elf.io/serviceId": "%d+"', step_titled("the BalancingPolicies'").output)
    -- inspect: a reason for what is not programmed
    assert.matches("not programmed\n  - rejected: frontend 127.10.0.53:53/UDP is claimed by older "
      .. "LocalRedirectPolicy node-local-dns", step_titled("a policy that is not programmed").output, 1, true)
    assert.matches('"msg": "annotation refused"', step_titled("the agent's line").output, 1, true)

    -- nothing left behind
    local pin_dir, cgroup, run_dir = output:match("== debugging capture: pins (%S+), cgroup (%S+), run dir (%S+),")
    assert.is_string(pin_dir, context)
    assert.matches("^/sys/fs/bpf/balancing%-doc%-%d+$", pin_dir)
    for _, path in ipairs({ pin_dir, cgroup, run_dir, run_dir:match("^(.*)/run$") }) do
      assert.is_false(exists(path), path .. " was left behind")
    end
    local agent, server, backends, dnsmasq = output:match(
      "stopped: agent (%d+), fake API server (%d+), backends (%d+), dnsmasq (%d+)")
    assert.is_string(dnsmasq, "the cleanup line" .. context)
    assert.is_false(alive(agent, "balancing-agent"), "the agent still runs")
    assert.is_false(alive(server, "fake_apiserver"), "the fake API server still runs")
    assert.is_false(alive(backends, "debugging-backends"), "the backends still run")
    assert.is_false(alive(dnsmasq, "dnsmasq"), "dnsmasq still runs")
  end)
end)
