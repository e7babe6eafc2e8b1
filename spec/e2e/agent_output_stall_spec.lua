-- The real agent whose stdout nobody reads for a while (issue 8: "Never
-- blocks the loop"; docs/agent.md "Output under a stalled reader"). Its
-- stdout is a FIFO of one page that the spec stops reading while a flood of
-- translation events fills it and the agent's buffer
-- (BALANCING_OUTPUT_BUFFER_BYTES). Stalled, the agent still answers /healthz,
-- still follows a manifest change into the pinned maps, and counts what it
-- refuses (balancing_log_lines_dropped_total, and
-- balancing_events_dropped_total{stage="output"}). Read again, the lines
-- flow, the drop lines among them, and every line is complete JSON.
local agent_run = require("helpers.agent_run")
local cjson = require("cjson")
local core_env = require("helpers.core_env")
local frontend_view = require("helpers.frontend_view")
local scratch = require("helpers.scratch")
local ffi = require("ffi")
local system = require("system")

for _, decl in ipairs({ "int open(const char *path, int flags, ...);", "int fcntl(int fd, int cmd, ...);",
  "long read(int fd, void *buf, unsigned long count);", "int close(int fd);" }) do
  pcall(ffi.cdef, decl)
end
local O_RDONLY, O_NONBLOCK, F_SETPIPE_SZ = 0, 2048, 1031

local FIXTURES = "spec/fixtures/kernel"
local SERVED_VIP, EMPTY_VIP, LATE_VIP = "127.10.0.106", "127.10.0.107", "127.10.0.108"
local FLOOD_SECONDS = 3
local DROP_LOG_SECONDS = 1

local flood_manifests = require("helpers.flood_manifests")

-- demo/late on LATE_VIP:80/TCP (version: a comment, so that each write is
-- a change of the directory).
local function late_service(version)
  return table.concat({ "# " .. version, "apiVersion: v1", "kind: Service",
    "metadata: {name: late, namespace: demo, uid: late-uid}",
    "spec: {clusterIP: " .. LATE_VIP .. ", ports: [{name: http, port: 80}]}", "" }, "\n")
end

-- The FIFO's read end, never waiting: what it holds now, as whole lines
-- (a line cut by the read is kept for the next one).
local Reader = {}
Reader.__index = Reader

local function open_reader(path)
  local fd = ffi.C.open(path, O_RDONLY + O_NONBLOCK)
  assert(fd >= 0, "cannot open the FIFO " .. path)
  -- one page: the stall shows after a few lines rather than 64 KiB
  ffi.C.fcntl(fd, F_SETPIPE_SZ, ffi.new("int", 4096))
  return setmetatable({ fd = fd, rest = "", buf = ffi.new("char[65536]"), closed = false }, Reader)
end

function Reader:lines()
  local parts = { self.rest }
  while true do
    local n = tonumber(ffi.C.read(self.fd, self.buf, 65536))
    if n == 0 then
      self.closed = true -- (every writer gone)
    end
    if n <= 0 then
      break
    end
    parts[#parts + 1] = ffi.string(self.buf, n)
  end
  local text = table.concat(parts)
  local lines = {}
  local last = 1
  for line, next_at in text:gmatch("([^\n]*)\n()") do
    lines[#lines + 1] = line
    last = next_at
  end
  self.rest = text:sub(last)
  return lines
end

function Reader:close()
  if self.fd >= 0 then
    ffi.C.close(self.fd)
    self.fd = -1
  end
end

describe("balancing-agent with a stalled reader of its stdout", function()
  local dir, reader
  after_each(function()
    agent_run.cleanup()
    if reader then
      reader:close()
      reader = nil
    end
    if dir then
      scratch.remove_dir(dir)
      dir = nil
    end
    core_env.close_all()
  end)

  it("answers /healthz, follows a manifest change, drops and counts lines, and says so once read again", function()
    local env = core_env.open(pending)
    if not env then
      return
    end
    dir = scratch.temp_dir()
    scratch.write_file(dir .. "/manifests/demo.yaml", flood_manifests(SERVED_VIP, EMPTY_VIP, core_env.free_port()))
    local fifo = dir .. "/stdout.fifo"
    assert.equals(0, (scratch.run("mkfifo " .. scratch.quote(fifo))))
    reader = open_reader(fifo) -- (before the agent: its shell's open of the FIFO then does not wait)
    -- stdout to the FIFO, stderr (a sanitizer's report) to the log file
    local agent = agent_run.start({ manifests = dir .. "/manifests", cgroup = env:cgroup(), bpffs = env:pin_dir(),
      log = dir .. "/agent.log", wrapper = "sh -c 'exec \"$0\" \"$@\" >" .. fifo .. "'",
      env = "BALANCING_OUTPUT_BUFFER_BYTES=65536 BALANCING_EVENT_DROP_LOG_SECONDS=" .. DROP_LOG_SECONDS
        .. " BALANCING_OUTPUT_DROP_LOG_SECONDS=" .. DROP_LOG_SECONDS .. " BALANCING_LOG_LEVEL=debug" })
    local seen = reader:lines()
    assert.is_true(#seen > 0, "no line from the agent's start")

    -- stalled from here: a flood of events fills the FIFO and the buffer
    local flood = core_env.spawn_in_cgroup(agent.cgroup, string.format("exec python3 %s/flood.py %s 53 %s 80 %s",
      FIXTURES, SERVED_VIP, EMPTY_VIP, FLOOD_SECONDS))
    local started = cjson.decode((assert(flood:read("*l"), "the flood did not start")))
    agent_run.track(started.pid, "flood.py")
    local answers = 0
    local flood_ends = system.monotime() + FLOOD_SECONDS
    while system.monotime() < flood_ends do
      assert.equals(200, agent_run.http_get(agent.port, "/healthz"), "/healthz while stdout is stalled")
      answers = answers + 1
    end
    cjson.decode((assert(flood:read("*l"), "the flood did not finish")))
    flood:close()
    assert.is_true(answers >= 3, answers .. " /healthz answers in " .. FLOOD_SECONDS .. " s")
    local refused_events = agent_run.eventually(5, function()
      local n = agent_run.metric_value(agent.port, "balancing_events_dropped_total", { stage = "output" })
      return n and n > 0 and n
    end)
    assert.is_truthy(refused_events, "no event line refused: was stdout stalled at all?")

    -- still stalled: a new Service reaches the pinned maps, and the lines
    -- its syncs log (debug) are refused and counted
    local version = 0
    local followed = agent_run.eventually(10, function()
      version = version + 1
      scratch.write_file(dir .. "/manifests/late.yaml", late_service(version))
      local view = agent_run.tool_json(agent_run.INSPECT, { "--bpffs", agent.bpffs, "--json", "showMapData", "all" })
      return frontend_view.find(view.frontends, LATE_VIP, 80, "TCP") ~= nil
    end)
    assert.is_true(followed, "the new Service never reached the maps while stdout was stalled")
    local log_dropped = agent_run.eventually(10, function()
      version = version + 1
      scratch.write_file(dir .. "/manifests/late.yaml", late_service(version))
      local n = agent_run.metric_value(agent.port, "balancing_log_lines_dropped_total")
      return n and n > 0
    end)
    assert.is_true(log_dropped, "no log line refused while stdout was stalled")
    assert.equals(200, agent_run.http_get(agent.port, "/healthz"))
    assert.is_true(agent_run.metric_value(agent.port, "balancing_output_buffer_bytes") > 0)

    -- read again: the lines flow, with the drop lines, until what they say
    -- adds up to the counters
    local said_log, said_output, flowed = 0, 0, 0
    local caught_up = agent_run.eventually(15, function()
      for _, line in ipairs(reader:lines()) do
        local ok, doc = pcall(cjson.decode, line)
        assert.is_true(ok and type(doc) == "table", "not a whole JSON line: " .. line:sub(1, 200))
        flowed = flowed + 1
        if doc.msg == "log lines dropped" then
          assert.equals("warn", doc.level)
          said_log = said_log + doc.lines
        elseif doc.msg == "events dropped" then
          said_output = said_output + doc.output
        end
      end
      return said_log > 0 and said_log == agent_run.metric_value(agent.port, "balancing_log_lines_dropped_total")
        and said_output == agent_run.metric_value(agent.port, "balancing_events_dropped_total", { stage = "output" })
    end)
    assert.is_true(caught_up, string.format("said %d log lines and %d event lines dropped; /metrics says %s and %s",
      said_log, said_output, tostring(agent_run.metric_value(agent.port, "balancing_log_lines_dropped_total")),
      tostring(agent_run.metric_value(agent.port, "balancing_events_dropped_total", { stage = "output" }))))
    assert.is_true(flowed > 1)

    -- a normal stop loses nothing once the reader reads: the stop line comes
    assert.is_true(agent:alive())
    os.execute("kill -TERM " .. agent.pid)
    local stopped = false
    assert.is_true(agent_run.eventually(10, function()
      for _, line in ipairs(reader:lines()) do
        local ok, doc = pcall(cjson.decode, line)
        assert.is_true(ok and type(doc) == "table", "not a whole JSON line: " .. line:sub(1, 200))
        stopped = stopped or doc.msg:find("^stopping") ~= nil
      end
      return reader.closed
    end), "stdout not closed after SIGTERM")
    assert.is_true(stopped, "no stop line")
    assert.equals("", reader.rest)
    assert.is_nil(agent_run.sanitizer_report(agent.log)) -- (an ASan build: BALANCING_SANITIZE=1)
  end)
end)
