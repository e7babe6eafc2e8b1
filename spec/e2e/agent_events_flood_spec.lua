-- The real agent under a flood of translation events (issue 8, "Events";
-- docs/agent.md "Events under a flood"): real agent (--manifests), a ring of
-- one page (BALANCING_EVENT_RING_BYTES), a real client flood from the test
-- cgroup (spec/fixtures/kernel/flood.py). The agent never blocks its loop:
-- it drops, counts on /metrics (balancing_events_dropped_total), says so at
-- most once per interval, writes only whole JSON event lines, and answers
-- /healthz all along. And --events reaches map_configure.
local abi = require("balancing.abi")
local agent_run = require("helpers.agent_run")
local cjson = require("cjson")
local core_env = require("helpers.core_env")
local scratch = require("helpers.scratch")
local system = require("system")

local FIXTURES = "spec/fixtures/kernel"
local SERVED_VIP, EMPTY_VIP = "127.10.0.96", "127.10.0.97"
local FLOOD_SECONDS = 4
local DROP_LOG_SECONDS = 1

-- CONTRACTS.md "Logs": the line's own fields and an event's, exactly.
local EVENT_FIELDS = { "time", "level", "msg", "timestamp", "nodeName", "protocol", "isIpv4", "isSuccess", "failure",
  "destIp", "destPort", "natIp", "natPort", "natType", "natMode", "serviceId", "policyName", "clientPid",
  "clientPodName", "clientNamespace", "clientPodUid", "clientContainerId", "isHostApp", "redirectHitLimit" }
table.sort(EVENT_FIELDS)

local flood_manifests = require("helpers.flood_manifests")

-- Seconds of the day of an RFC 3339 UTC time with milliseconds (the log's).
local function seconds_of(rfc3339)
  local h, m, s, ms = rfc3339:match("T(%d%d):(%d%d):(%d%d)%.(%d%d%d)Z$")
  assert(h, "not an RFC 3339 time: " .. tostring(rfc3339))
  return tonumber(h) * 3600 + tonumber(m) * 60 + tonumber(s) + tonumber(ms) / 1000
end

local function sorted_keys(doc)
  local keys = {}
  for key in pairs(doc) do
    keys[#keys + 1] = key
  end
  table.sort(keys)
  return keys
end

describe("balancing-agent under a flood of events", function()
  local dir
  after_each(function()
    agent_run.cleanup()
    if dir then
      scratch.remove_dir(dir)
      dir = nil
    end
    core_env.close_all()
  end)

  local function start_agent(env_words)
    local env = core_env.open(pending)
    if not env then
      return nil
    end
    dir = scratch.temp_dir()
    scratch.write_file(dir .. "/manifests/demo.yaml", flood_manifests(SERVED_VIP, EMPTY_VIP, core_env.free_port()))
    return agent_run.start({ manifests = dir .. "/manifests", cgroup = env:cgroup(), bpffs = env:pin_dir(),
      log = dir .. "/agent.log", env = env_words }), env
  end

  it("drops and counts what it cannot take, says so at most once per interval, writes only whole JSON lines "
    .. "and answers /healthz all along", function()
    local agent = start_agent("BALANCING_EVENT_RING_BYTES=4096 BALANCING_EVENT_DROP_LOG_SECONDS="
      .. DROP_LOG_SECONDS)
    if not agent then
      return
    end
    assert.equals(0, agent_run.metric_value(agent.port, "balancing_events_dropped_total"))

    local flood = core_env.spawn_in_cgroup(agent.cgroup, string.format("exec python3 %s/flood.py %s 53 %s 80 %s",
      FIXTURES, SERVED_VIP, EMPTY_VIP, FLOOD_SECONDS))
    local started = cjson.decode((assert(flood:read("*l"), "the flood did not start")))
    agent_run.track(started.pid, "flood.py")
    -- /healthz asked again and again while the flood lasts: each answer
    -- within curl's 2 s, and 200
    local answers, slowest = 0, 0
    local flood_ends = system.monotime() + FLOOD_SECONDS
    while system.monotime() < flood_ends do
      local asked = system.monotime()
      assert.equals(200, agent_run.http_get(agent.port, "/healthz"), "/healthz during the flood")
      slowest = math.max(slowest, system.monotime() - asked)
      answers = answers + 1
    end
    local result = cjson.decode((assert(flood:read("*l"), "the flood did not finish")))
    flood:close()
    assert.is_true(answers >= 3, answers .. " /healthz answers in " .. FLOOD_SECONDS .. " s")
    assert.is_true(result.sent > 10000, "the flood sent only " .. result.sent .. " datagrams")
    assert.is_true(result.refused > 0, "no refused connect in the flood")

    -- a page of ring cannot hold what one process makes: the programs
    -- found it full, and counted
    local ring = agent_run.metric_value(agent.port, "balancing_events_dropped_total", { stage = "ring" })
    assert.is_true(ring > 0, "balancing_events_dropped_total{stage=\"ring\"} is " .. tostring(ring))
    assert.is_true(agent:metric("balancing_events_total") > 0, "no event was written")
    -- the drop line comes within an interval (and the loop's tick) of the flood's end
    local said = agent_run.eventually(DROP_LOG_SECONDS + 5, function()
      local lines = agent_run.log_lines(agent.log, "events dropped")
      local total = 0
      for _, line in ipairs(lines) do
        total = total + line.ring + line.agent + line.output
      end
      -- everything counted is said once the flood is over
      return total == agent_run.metric_value(agent.port, "balancing_events_dropped_total") and lines
    end)
    assert.is_truthy(said, "the drop lines do not add up to /metrics: " .. agent:log_tail())
    assert.is_true(#said >= 1)
    for i, line in ipairs(said) do
      assert.equals("warn", line.level)
      assert.is_true(line.ring + line.agent + line.output > 0, "a drop line that counts nothing")
      if i > 1 then
        local apart = seconds_of(line.time) - seconds_of(said[i - 1].time)
        assert.is_true(apart >= DROP_LOG_SECONDS - 0.01, string.format("drop lines %d and %d %.3f s apart", i - 1,
          i, apart))
      end
    end

    -- every line of the log is one JSON object; every event line has
    -- exactly the contract's fields
    local events = 0
    for line in (scratch.read_file(agent.log) or ""):gmatch("[^\n]+") do
      local ok, doc = pcall(cjson.decode, line)
      assert.is_true(ok and type(doc) == "table", "not a JSON line: " .. line:sub(1, 200))
      if doc.msg == "formatted ebpf event" then
        events = events + 1
        assert.same(EVENT_FIELDS, sorted_keys(doc))
        assert.equals(doc.isSuccess and "demo/dns" or "demo/empty", doc.policyName)
      end
    end
    assert.is_true(events > 0)
    assert.equals(agent:metric("balancing_events_total"), events)
    assert.equals(200, agent_run.http_get(agent.port, "/healthz"))
    assert.is_nil(agent_run.sanitizer_report(agent.log)) -- (an ASan build: BALANCING_SANITIZE=1)
  end)

  it("--events failures reaches map_configure, and only failures become event lines", function()
    local agent, env = start_agent("BALANCING_EVENTS=failures")
    if not agent then
      return
    end
    local configure = core_env.decode("struct configure_value",
      assert(assert(env.core.open_maps(agent.bpffs)).map_configure:lookup("\0\0\0\0")))
    assert.equals(abi.C.EVENTS_FAILURES, configure.events)

    local flood = core_env.spawn_in_cgroup(agent.cgroup, string.format("exec python3 %s/flood.py %s 53 %s 80 0.2",
      FIXTURES, SERVED_VIP, EMPTY_VIP))
    flood:read("*l")
    local result = cjson.decode((assert(flood:read("*l"), "the flood did not finish")))
    flood:close()

    local logged = agent_run.eventually(5, function()
      return agent:metric("balancing_events_total") >= result.refused
    end)
    assert.is_true(logged, "events logged: " .. tostring(agent:metric("balancing_events_total")))
    for _, doc in ipairs(agent_run.log_lines(agent.log, "formatted ebpf event")) do
      assert.is_false(doc.isSuccess)
      assert.equals("demo/empty", doc.policyName)
    end
    assert.equals(result.refused, agent:metric("balancing_events_total"))
  end)
end)
