-- The real balancing-agent for end-to-end specs: started standalone on a
-- manifest directory, a test cgroup and a pin directory of the spec's own
-- (core_env), killed and restarted, and everything it started taken down on
-- every exit. Only processes this helper started are signalled, by pid, and
-- only while /proc/PID/cmdline still names what was started.
--
--   local agent_run = require("helpers.agent_run")
--   after_each(agent_run.cleanup)              -- before core_env.close_all
--   local agent = agent_run.start{ manifests = dir, cgroup = cg, bpffs = pins, log = dir .. "/agent.log" }
--   agent:kill("KILL")                         -- returns once the process is gone
--   agent = agent_run.start{ ... }             -- a restart: same pins and cgroup, waits for /readyz
local scratch = require("helpers.scratch")
local core_env = require("helpers.core_env")

local M = {}

local build_dir = os.getenv("BALANCING_BUILD_DIR") or "build"
M.AGENT = build_dir .. "/bin/balancing-agent"
M.INSPECT = build_dir .. "/bin/inspect"

-- Waits until check() is true, polling, at most seconds; returns its last
-- value. Never a fixed sleep: it returns as soon as check() holds.
function M.eventually(seconds, check)
  local deadline = os.time() + seconds
  local value = check()
  while not value and os.time() <= deadline do
    os.execute("sleep 0.05")
    value = check()
  end
  return value
end

-- status code and body of GET http://127.0.0.1:port/path, or nil.
function M.http_get(port, path)
  local status, body = scratch.run(string.format("curl -s -w '\\n%%{http_code}' --max-time 2 http://127.0.0.1:%d%s",
    port, path))
  if status ~= 0 then
    return nil
  end
  local text, code = body:match("^(.*)\n(%d+)$")
  return tonumber(code), text
end

local read_file = scratch.read_file

-- true while pid is a live process (a zombie is not) whose command line
-- contains marker.
function M.alive(pid, marker)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if not stat or stat:match("^%d+ %b() (%u)") == "Z" then
    return false
  end
  local cmdline = (read_file("/proc/" .. pid .. "/cmdline") or ""):gsub("%z", " ")
  return cmdline:find(marker, 1, true) ~= nil
end

-- Processes started here: { pid =, marker =, pipe = } until they are gone.
local started = {}

-- Signals pid (only while it is still the process that was started) and
-- waits at most seconds for it to be gone; true once it is.
function M.stop_process(pid, marker, signal, seconds)
  if M.alive(pid, marker) then
    os.execute(string.format("kill -%s %d 2>/dev/null", signal or "TERM", pid))
  end
  return M.eventually(seconds or 10, function() return not M.alive(pid, marker) end)
end

-- Remembers a process this spec started, for cleanup(); pipe, when given,
-- is the io.popen whose child it is (closed, which reaps it, once killed).
function M.track(pid, marker, pipe)
  started[#started + 1] = { pid = pid, marker = marker, pipe = pipe }
end

-- Starts a long-running command (not in a test cgroup) whose first output
-- line is a JSON document with its "pid"; returns that document.
function M.spawn_json(command, marker)
  local cjson = require("cjson")
  local pipe = assert(io.popen("exec env -u LD_PRELOAD " .. command))
  local line = pipe:read("*l")
  local ok, doc = pcall(cjson.decode, line or "")
  assert(ok and doc.pid, "no start line from " .. command .. ": " .. tostring(line))
  -- the pipe stays open (closing it would wait for the process): the
  -- process writes nothing more, and cleanup() kills it by pid
  M.track(doc.pid, marker, pipe)
  return doc
end

local Agent = {}
Agent.__index = Agent

-- The run directory (--run-dir: the agent's state file) of an agent whose
-- log is at log_path: "run" beside it, in the spec's scratch directory.
function M.run_dir_of(log_path)
  return (log_path:match("^(.*)/[^/]*$") or ".") .. "/run"
end

-- Starts the agent on its source — opts.manifests (a directory),
-- opts.kubeconfig, or opts.in_cluster (neither: the environment says where)
-- — with opts.cgroup, opts.bpffs (from core_env), its stdout and stderr
-- appended to opts.log; listens on a free port of its own. opts.env: a
-- prefix of VAR=value words; opts.wrapper: a command the agent runs under
-- (it must exec it, so that the pid is the agent's). Waits at most
-- opts.ready_seconds (20) for /readyz 200, i.e. its first sync applied;
-- fails the spec with the log's end otherwise. opts.lua_dir: --lua-dir
-- (else the agent's default). opts.args: more agent arguments (a list of
-- words). opts.stderr: a file for stderr alone (then opts.log is stdout
-- alone: the JSON log lines). opts.run_dir: --run-dir (else run_dir_of(log)).
function M.start(opts)
  local port = core_env.free_port()
  local source
  if opts.manifests then
    source = "--manifests " .. scratch.quote(opts.manifests)
  elseif opts.kubeconfig then
    source = "--kubeconfig " .. scratch.quote(opts.kubeconfig)
  else
    assert(opts.in_cluster, "agent_run.start: manifests, kubeconfig or in_cluster")
    source = ""
  end
  local extra = {}
  for i, word in ipairs(opts.args or {}) do
    extra[i] = scratch.quote(word)
  end
  -- (the state file for inspect goes beside the log, never to /run/balancing)
  local run_dir = opts.run_dir or M.run_dir_of(opts.log)
  local launch = assert(io.popen(string.format("env -u LD_PRELOAD %s %s %s %s --cgroup %s --bpffs %s --run-dir %s "
    .. "--listen 127.0.0.1:%d --node-name %s %s %s >>%s 2>%s & echo $!", opts.env or "", opts.wrapper or "", M.AGENT,
    source, scratch.quote(opts.cgroup), scratch.quote(opts.bpffs), scratch.quote(run_dir), port,
    scratch.quote(opts.node_name or "node-1"), opts.lua_dir and "--lua-dir " .. scratch.quote(opts.lua_dir) or "",
    table.concat(extra, " "), scratch.quote(opts.log), opts.stderr and ">" .. scratch.quote(opts.stderr) or "&1")))
  local pid = tonumber(launch:read("*l"))
  launch:close()
  assert(pid, "the agent did not start")
  M.track(pid, "balancing-agent")
  local agent = setmetatable({ pid = pid, port = port, log = opts.log, stderr = opts.stderr, cgroup = opts.cgroup,
    bpffs = opts.bpffs, run_dir = run_dir }, Agent)
  local seconds = opts.ready_seconds or 20
  local ready = M.eventually(seconds, function()
    return M.http_get(port, "/readyz") == 200 or not M.alive(pid, "balancing-agent")
  end)
  assert(ready and M.alive(pid, "balancing-agent"), string.format("the agent (pid %d) was not ready within %d s: %s",
    pid, seconds, agent:log_tail()))
  return agent
end

function Agent:alive()
  return M.alive(self.pid, "balancing-agent")
end

-- Sends the signal ("KILL", "TERM") and waits (at most 10 s) until the
-- agent is gone.
function Agent:kill(signal)
  assert(M.stop_process(self.pid, "balancing-agent", signal, 10),
    string.format("the agent (pid %d) still runs 10 s after SIG%s", self.pid, signal))
end

-- The samples of a metric on the agent's /metrics (as balancing.metrics.parse
-- gives them) whose labels include labels (all of them without); nil when
-- /metrics does not answer.
function M.metric_samples(port, name, labels)
  local code, text = M.http_get(port, "/metrics")
  if code ~= 200 then
    return nil
  end
  local found = {}
  for _, sample in ipairs(require("balancing.metrics").parse(text)[name] or {}) do
    local matches = true
    for key, value in pairs(labels or {}) do
      matches = matches and sample.labels[key] == value
    end
    if matches then
      found[#found + 1] = sample
    end
  end
  return found
end

-- The sum of those samples' values (0 when there is none), or nil.
function M.metric_value(port, name, labels)
  local samples = M.metric_samples(port, name, labels)
  if not samples then
    return nil
  end
  local sum = 0
  for _, sample in ipairs(samples) do
    sum = sum + sample.value
  end
  return sum
end

-- A manifest (YAML) of a ClusterIP Service and its EndpointSlice for the
-- agent's --manifests directory: service.name, .namespace ("demo"), .vip,
-- .port (80), .protocol ("TCP"), one endpoint 127.0.0.1 on .backend_port.
function M.service_yaml(service)
  local name, namespace = service.name, service.namespace or "demo"
  local protocol = service.protocol or "TCP"
  return table.concat({
    "apiVersion: v1", "kind: Service",
    "metadata: {name: " .. name .. ", namespace: " .. namespace .. ", uid: " .. name .. "-uid}",
    "spec: {clusterIP: " .. service.vip .. ", ports: [{name: p, port: " .. (service.port or 80) .. ", protocol: "
      .. protocol .. "}]}",
    "---",
    "apiVersion: discovery.k8s.io/v1", "kind: EndpointSlice",
    "metadata: {name: " .. name .. "-1, namespace: " .. namespace .. ", labels: {kubernetes.io/service-name: "
      .. name .. "}}",
    "addressType: IPv4",
    "ports: [{name: p, port: " .. service.backend_port .. ", protocol: " .. protocol .. "}]",
    "endpoints: [{addresses: [127.0.0.1]}]", "" }, "\n")
end

-- The backend one connection from inside cgroup to vip:80 reached
-- ("127.0.0.1:port"), or nil (refused, nothing translated).
function M.connect_once(cgroup, vip)
  local output = core_env.run_in_cgroup(cgroup, "exec python3 spec/fixtures/kernel/client.py tcp " .. vip .. " 80 1")
  local ok, run = pcall(require("cjson").decode, output)
  return ok and type(run) == "table" and run.results and run.results[1] and run.results[1].backend or nil
end

-- The value of an unlabelled metric on /metrics, or nil.
function Agent:metric(name)
  local code, text = M.http_get(self.port, "/metrics")
  if code ~= 200 then
    return nil
  end
  return tonumber(("\n" .. text):match("\n" .. name:gsub("%p", "%%%0") .. " ([%d.eE+-]+)\n"))
end

-- The end of the log file the agent writes to (its last 4 KiB: a log of
-- thousands of event lines is not read whole for an assertion's message).
local function file_tail(path)
  local file = io.open(path, "r")
  if not file then
    return "(no log)"
  end
  local size = file:seek("end")
  file:seek("set", math.max(0, size - 4096))
  local text = file:read("*a")
  file:close()
  return text
end

function Agent:log_tail()
  if self.stderr then
    return file_tail(self.log) .. "\n(stderr:)\n" .. file_tail(self.stderr)
  end
  return file_tail(self.log)
end

-- The log's JSON lines, decoded, whose msg is msg (all of them, in order).
function M.log_lines(path, msg)
  local cjson = require("cjson")
  local found = {}
  for line in (read_file(path) or ""):gmatch("[^\n]+") do
    local ok, doc = pcall(cjson.decode, line)
    if ok and type(doc) == "table" and doc.msg == msg then
      found[#found + 1] = doc
    end
  end
  return found
end

-- The first line of a sanitizer report (an ASan/UBSan build of the agent)
-- in the log at path, or nil.
function M.sanitizer_report(path)
  for line in (read_file(path) or ""):gmatch("[^\n]+") do
    if line:find("Sanitizer", 1, true) or line:find("runtime error:", 1, true) then
      return line
    end
  end
  return nil
end

-- The environment variables the binaries read, unset for a tool run so that
-- the caller's environment does not leak into what is tested.
local TOOL_ENV = { "NODE_NAME", "BALANCING_MANIFESTS", "BALANCING_OUT_CLUSTER", "BALANCING_LUA_DIR",
  "BALANCING_LOG_LEVEL", "BALANCING_BPF_LOG_LEVEL", "BALANCING_REDIRECT_QOS_LIMIT", "BALANCING_LISTEN",
  "BALANCING_CGROUP", "BALANCING_BPFFS", "BALANCING_RUN_DIR", "BALANCING_EVENTS", "KUBECONFIG",
  "KUBERNETES_SERVICE_HOST" }

-- run_tool(binary, {args}) → exit status, stdout, stderr of build/bin/inspect
-- or balancing-agent run to its end (plan, uninstall), in a clean environment.
function M.run_tool(binary, args)
  local words = { "env" }
  for _, name in ipairs(TOOL_ENV) do
    words[#words + 1] = "-u " .. name
  end
  words[#words + 1] = scratch.quote(binary)
  for _, arg in ipairs(args) do
    words[#words + 1] = scratch.quote(arg)
  end
  return scratch.run(table.concat(words, " "))
end

-- The JSON document of a tool run that must succeed (`plan --json`,
-- `inspect --json ...`); fails the spec with its stderr otherwise.
function M.tool_json(binary, args)
  local status, stdout, stderr = M.run_tool(binary, args)
  local what = binary .. " " .. table.concat(args, " ")
  assert(status == 0, string.format("%s: exit %s\n%s", what, tostring(status), stderr))
  local ok, doc = pcall(require("cjson").decode, stdout)
  assert(ok and type(doc) == "table", what .. ": not a JSON document: " .. stdout:sub(1, 2000))
  return doc
end

-- `balancing-agent uninstall`: the links detached, every pin removed, and
-- the state file under run_dir (a spec's own: never /run/balancing).
function M.uninstall(bpffs, cgroup, run_dir)
  assert(run_dir, "agent_run.uninstall: run_dir (uninstall removes its state.json)")
  return scratch.run(string.format("%s uninstall --bpffs %s --cgroup %s --run-dir %s", M.AGENT, scratch.quote(bpffs),
    scratch.quote(cgroup), scratch.quote(run_dir)))
end

-- after_each: kills (SIGKILL, by pid) every process started here that is
-- still running; an error names one that would not go.
function M.cleanup()
  local stuck = {}
  for i = #started, 1, -1 do
    local process = started[i]
    if not M.stop_process(process.pid, process.marker, "KILL", 10) then
      stuck[#stuck + 1] = process.pid .. " (" .. process.marker .. ")"
    elseif process.pipe then
      pcall(process.pipe.close, process.pipe)
    end
  end
  started = {}
  if #stuck > 0 then
    error("agent_run cleanup: still running: " .. table.concat(stuck, ", "))
  end
end

-- The whole after_each of an agent spec: cleanup(), then its scratch
-- directory removed (when there is one) and the kernel handles closed.
function M.teardown(dir)
  M.cleanup()
  if dir then
    scratch.remove_dir(dir)
  end
  core_env.close_all()
end

return M
