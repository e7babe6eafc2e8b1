-- The agent's log through jq, as the checklist reads it (issue 9, "Tracing
-- and logs"; CONTRACTS.md "Logs"):
--     kubectl logs ... | grep "formatted ebpf event" | jq .
-- With the real agent, a real TCP and a real UDP client in the test cgroup,
-- the agent's stdout piped exactly so: jq exits 0 and gives one object per
-- event line, each with every field the contract lists; and every line of
-- the agent's stdout is one JSON object (`jq -c .` over the whole log).
local agent_run = require("helpers.agent_run")
local cjson = require("cjson")
local core_env = require("helpers.core_env")
local kernel = require("helpers.kernel")
local scratch = require("helpers.scratch")

local FIXTURES = "spec/fixtures/kernel"
local TCP_VIP, UDP_VIP = "127.10.0.94", "127.10.0.95"
local READY_SECONDS = 30
local EVENT_SECONDS = 20 -- the events reaching the log, under ASan on a loaded machine

-- CONTRACTS.md "Logs": every log line's fields, and an event line's.
local LINE_FIELDS = { "time", "level", "msg" }
local EVENT_FIELDS = { "timestamp", "nodeName", "protocol", "isIpv4", "isSuccess", "failure", "destIp", "destPort",
  "natIp", "natPort", "natType", "natMode", "serviceId", "policyName", "clientPid", "clientPodName",
  "clientNamespace", "clientPodUid", "clientContainerId", "isHostApp", "redirectHitLimit" }

local quote = scratch.quote

-- A shell pipeline over the agent's stdout, run by bash with pipefail (a
-- grep that finds nothing fails it too); exit status, stdout, stderr.
local function pipeline(text)
  return scratch.run("bash -c " .. quote("set -o pipefail; " .. text))
end

local function json_list(words)
  return cjson.encode(words)
end

-- The decoded lines of jq -c output.
local function decoded_lines(text)
  local list = {}
  for line in text:gmatch("[^\n]+") do
    local ok, value = pcall(cjson.decode, line)
    assert(ok, "jq -c printed a line that is not JSON: " .. line)
    list[#list + 1] = value
  end
  return list
end

describe("the agent's log through grep and jq, as the checklist reads it", function()
  local dir
  after_each(function()
    agent_run.teardown(dir)
    dir = nil
  end)

  it("gives one object per translation event with the contract's fields, for a TCP and a UDP client", function()
    local env = core_env.open(pending)
    if not env then
      return
    end
    dir = scratch.temp_dir()
    local tcp = agent_run.spawn_json("python3 " .. FIXTURES .. "/servers.py tcp 127.0.0.1", "servers.py").backends[1]
    local udp = agent_run.spawn_json("python3 " .. FIXTURES .. "/servers.py udp 127.0.0.1", "servers.py").backends[1]
    scratch.write_file(dir .. "/manifests/web.yaml", agent_run.service_yaml({ name = "web", vip = TCP_VIP,
      backend_port = tcp:match(":(%d+)$") }))
    scratch.write_file(dir .. "/manifests/dns.yaml", agent_run.service_yaml({ name = "dns", vip = UDP_VIP, port = 53,
      protocol = "UDP", backend_port = udp:match(":(%d+)$") }))
    local stdout_log = dir .. "/agent.stdout"
    local agent = agent_run.start({ manifests = dir .. "/manifests", cgroup = env:cgroup(), bpffs = env:pin_dir(),
      log = stdout_log, stderr = dir .. "/agent.stderr", ready_seconds = READY_SECONDS })

    local tcp_run = kernel.client_in_cgroup(agent.cgroup, "tcp", TCP_VIP, 80, 1)
    assert.equals(tcp, tcp_run.results[1].backend, "the TCP client did not reach its backend through the VIP")
    local udp_run = kernel.client_in_cgroup(agent.cgroup, "udp-unconnected", UDP_VIP, 53, 1)
    assert.equals(udp, udp_run.results[1].backend, "the UDP client did not reach its backend through the VIP")

    -- the events are written as the agent's reader gets to them
    local select_clients = string.format('grep "formatted ebpf event" %s | jq -c %s', quote(stdout_log),
      quote(string.format("select(.clientPid == %d or .clientPid == %d)", tcp_run.pid, udp_run.pid)))
    local last_error = ""
    local ours = agent_run.eventually(EVENT_SECONDS, function()
      local status, out, errors = pipeline(select_clients)
      if status ~= 0 then
        last_error = string.format("(grep | jq: exit %d %s)", status, errors)
        return nil
      end
      local by_pid = {}
      for _, event in ipairs(decoded_lines(out)) do
        by_pid[event.clientPid] = event
      end
      return by_pid[tcp_run.pid] and by_pid[udp_run.pid] and by_pid
    end)
    assert(ours, string.format("no event of the TCP client (pid %d) and the UDP client (pid %d) in the agent's log "
      .. "within %d s %s:\n%s", tcp_run.pid, udp_run.pid, EVENT_SECONDS, last_error, agent:log_tail()))

    -- the checklist's pipeline, word for word: jq succeeds and prints them
    local status, pretty, errors = pipeline(string.format('cat %s | grep "formatted ebpf event" | jq .',
      quote(stdout_log)))
    assert.equals(0, status, errors)
    assert.matches('"msg": "formatted ebpf event"', pretty, 1, true)

    -- one object per event line: as many as grep counts, each an event
    local _, count_text = pipeline(string.format('grep -c "formatted ebpf event" %s', quote(stdout_log)))
    local event_lines = tonumber(count_text)
    local compact
    status, compact, errors = pipeline(string.format('grep "formatted ebpf event" %s | jq -c .', quote(stdout_log)))
    assert.equals(0, status, errors)
    local events = decoded_lines(compact)
    assert.equals(event_lines, #events)
    for _, event in ipairs(events) do
      assert.equals("table", type(event))
      assert.equals("formatted ebpf event", event.msg)
    end

    -- every field of the contract on every event (jq -e: exit 0 only when true)
    local missing
    status, missing = pipeline(string.format('grep "formatted ebpf event" %s | jq -c --argjson want %s %s',
      quote(stdout_log), quote(json_list(EVENT_FIELDS)), quote("$want - keys")))
    assert.equals(0, status)
    for _, fields in ipairs(decoded_lines(missing)) do
      assert.same({}, fields, "an event line lacks " .. table.concat(fields, ", "))
    end
    status, _, errors = pipeline(string.format('grep "formatted ebpf event" %s | jq -e -s --argjson want %s %s',
      quote(stdout_log), quote(json_list(EVENT_FIELDS)), quote("length > 0 and all(.[]; ($want - keys) == [])")))
    assert.equals(0, status, errors)

    -- the two clients' events say what happened
    for _, case in ipairs({ { run = tcp_run, protocol = "TCP", vip = TCP_VIP, port = 80, backend = tcp,
      policy = "demo/web" }, { run = udp_run, protocol = "UDP", vip = UDP_VIP, port = 53, backend = udp,
      policy = "demo/dns" } }) do
      local event = ours[case.run.pid]
      assert.equals(case.protocol, event.protocol)
      assert.equals(case.vip, event.destIp)
      assert.equals(case.port, event.destPort)
      assert.equals(case.backend, event.natIp .. ":" .. event.natPort)
      assert.is_true(event.isSuccess)
      assert.equals("service", event.natType)
      assert.equals(case.policy, event.policyName)
      assert.equals("node-1", event.nodeName)
      assert.is_true(event.isHostApp)
    end

    -- every line of the agent's stdout is one JSON object with time, level, msg
    status, _, errors = pipeline(string.format("jq -c . %s >/dev/null", quote(stdout_log)))
    assert.equals(0, status, errors)
    local _, line_count = pipeline(string.format("wc -l < %s", quote(stdout_log)))
    local per_line
    status, per_line, errors = pipeline(string.format("jq -R -c --argjson want %s %s %s", quote(json_list(LINE_FIELDS)),
      quote('fromjson | if type == "object" and ($want - keys) == [] then {msg} '
        .. 'else error("not a log object: \\(.)") end'), quote(stdout_log)))
    assert.equals(0, status, errors)
    assert.equals(tonumber(line_count), #decoded_lines(per_line))
  end)
end)
