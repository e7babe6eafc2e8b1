-- The fake Kubernetes API server (scripts/fake_apiserver.py) for specs: start
-- it on 127.0.0.1, talk to it with curl, write a kubeconfig for real clients,
-- run clients in the background, stop everything.
--
--   local apiserver = require("helpers.apiserver")
--   after_each(apiserver.stop_all)                 -- teardown, failure included
--   local server = apiserver.start{ tls = true, token = "t", manifests = dir }
--   local code, body = server:request("GET", "/api/v1/services")
--   server:control("/_fake/faults", { failRequests = 2 })
--   local watch = server:spawn("curl -sN ... " .. server.url .. "/api/v1/pods?watch=1")
--   watch:wait_for("ADDED")
--
-- Test safety (CONTRACTS.md): the server listens on 127.0.0.1 only; each server
-- has a temporary directory of its own (port file, test CA, kubeconfig, logs)
-- removed by stop(); stop() kills, by pid, only the server and the background
-- clients this helper started. The server also exits by itself if the spec
-- runner dies (--exit-with-parent).
local cjson = require("cjson")
local lfs = require("lfs")
local scratch = require("helpers.scratch")
local system = require("system")

local M = {}

local quote = scratch.quote
-- Start-up includes making a test CA with openssl; bounded, never a fixed sleep.
local START_TIMEOUT_SECONDS = 30
local STOP_TIMEOUT_SECONDS = 10
-- Processes started here run without the sanitizer runtime that
-- scripts/test.sh may preload into LuaJIT.
local CLEAN_ENV = "unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; "

local function this_dir()
  local source = debug.getinfo(1, "S").source
  return (source:sub(1, 1) == "@" and source:sub(2) or source):match("^(.*)/[^/]*$") or "."
end

M.SCRIPT = this_dir() .. "/../../scripts/fake_apiserver.py"

local read_file = scratch.read_file

M.read_file = read_file

local function shell(command)
  local pipe = assert(io.popen(CLEAN_ENV .. command, "r"))
  local output = pipe:read("*a")
  pipe:close()
  return output
end

-- Debian's python3 (the one scripts/setup.sh installs python3-yaml for), not a
-- python3 shim first on PATH (pyenv's costs a start-up of its own); -I: no
-- user site or PYTHON* variables.
function M.python()
  return lfs.attributes("/usr/bin/python3", "mode") and "/usr/bin/python3 -I" or "python3 -I"
end

local function own_pid()
  local text = assert(read_file("/proc/self/stat"))
  return tonumber(text:match("^(%d+)"))
end

local function alive(pid)
  -- a zombie has exited: only its parent's wait is missing
  local stat = read_file("/proc/" .. pid .. "/stat")
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

M.alive = alive

-- Whether any live process is left in process group pgid (a spawned command's
-- session: the shell and whatever it started).
local function group_alive(pgid)
  for entry in lfs.dir("/proc") do
    if entry:match("^%d+$") then
      local stat = read_file("/proc/" .. entry .. "/stat")
      local state, group = (stat or ""):match("^%d+ %b() (%a) %d+ (%d+)")
      if state and state ~= "Z" and tonumber(group) == pgid then
        return true
      end
    end
  end
  return false
end

-- Polls fn() every 20 ms until it returns a true value or timeout seconds
-- pass; returns that value, or nil.
function M.wait_until(fn, timeout)
  local deadline = system.monotime() + timeout
  repeat
    local value = fn()
    if value then
      return value
    end
    system.sleep(0.02)
  until system.monotime() > deadline
  return fn()
end

-- Background processes -------------------------------------------------------------

local Process = {}
Process.__index = Process

-- Runs a shell command in a session of its own (so that stop() reaches the
-- whole pipeline), stdout and stderr to files in dir, exit status to a file.
local function spawn(dir, command, counter)
  local base = dir .. "/proc" .. counter
  local wrapped = "(" .. command .. ") >" .. quote(base .. ".out") .. " 2>" .. quote(base .. ".err")
    .. " </dev/null; echo $? >" .. quote(base .. ".rc")
  local pid = tonumber(shell("setsid sh -c " .. quote(wrapped) .. " >/dev/null 2>&1 </dev/null & echo $!"))
  assert(pid, "could not start: " .. command)
  return setmetatable({ pid = pid, base = base, command = command }, Process)
end

function Process:output()
  return read_file(self.base .. ".out") or ""
end

function Process:errors()
  return read_file(self.base .. ".err") or ""
end

-- The exit status once the command has finished, else nil.
function Process:status()
  local text = read_file(self.base .. ".rc")
  return text and tonumber(text:match("%d+"))
end

-- Waits until stdout contains pattern (a Lua pattern); returns the output or
-- errors with what was seen.
function Process:wait_for(pattern, timeout)
  local found = M.wait_until(function()
    return self:output():find(pattern) ~= nil
  end, timeout or 20)
  if not found then
    error(("%q not seen within %ss in the output of %s\nstdout: %s\nstderr: %s"):format(
      pattern, timeout or 20, self.command, self:output(), self:errors()), 2)
  end
  return self:output()
end

-- Waits for the command to end by itself; returns its exit status or nil.
function Process:wait(timeout)
  return M.wait_until(function()
    return self:status()
  end, timeout or 20)
end

-- Stops the command's whole session (a pipeline, a shell and its child) and
-- waits until none of it is left.
function Process:kill()
  if group_alive(self.pid) then
    os.execute("kill -TERM -" .. self.pid .. " 2>/dev/null")
    if not M.wait_until(function()
      return not group_alive(self.pid)
    end, STOP_TIMEOUT_SECONDS) then
      os.execute("kill -KILL -" .. self.pid .. " 2>/dev/null")
      M.wait_until(function()
        return not group_alive(self.pid)
      end, STOP_TIMEOUT_SECONDS)
    end
  end
end

-- The server ---------------------------------------------------------------------------

local Server = {}
Server.__index = Server

local running = {}

-- start()'s options passed on as they are: option, the server's flag (alone
-- when the option is true).
local FLAGS = { { "token", "--token" }, { "manifests", "--manifests" }, { "no_crds", "--no-crds" },
  { "bookmark_interval", "--bookmark-interval" }, { "history", "--history" } }

-- options: tls (bool), token (string), client_cert (bool: the test CA issues
-- a client certificate, server.client_cert and server.client_key, that
-- authenticates), manifests (dir), no_crds (bool), bookmark_interval
-- (seconds), history (count), args (more arguments).
function M.start(options)
  options = options or {}
  local dir = scratch.temp_dir()
  local server = setmetatable({ dir = dir, token = options.token, tls = options.tls, processes = {} }, Server)
  local args = { "--port-file", dir .. "/port", "--exit-with-parent", tostring(own_pid()) }
  if options.tls then
    server.ca_file = dir .. "/ca.crt"
    table.insert(args, "--tls")
    table.insert(args, "--ca-file")
    table.insert(args, server.ca_file)
  end
  if options.client_cert then
    server.client_cert, server.client_key = dir .. "/client.crt", dir .. "/client.key"
    table.insert(args, "--client-cert")
    table.insert(args, dir .. "/client")
  end
  for _, flag in ipairs(FLAGS) do
    local value = options[flag[1]]
    if value == true then
      table.insert(args, flag[2])
    elseif value then
      table.insert(args, flag[2])
      table.insert(args, tostring(value))
    end
  end
  for _, arg in ipairs(options.args or {}) do
    table.insert(args, arg)
  end
  local words = { "exec " .. M.python(), quote(M.SCRIPT) }
  for _, arg in ipairs(args) do
    words[#words + 1] = quote(arg)
  end
  server.process = spawn(dir, table.concat(words, " "), 0)
  running[#running + 1] = server

  local port = M.wait_until(function()
    local text = read_file(dir .. "/port")
    return text and tonumber(text:match("^(%d+)\n")) or (not alive(server.process.pid) and -1)
  end, START_TIMEOUT_SECONDS)
  if not port or port < 0 then
    local log = server.process:errors()
    server:stop()
    error("the fake API server did not start: " .. log, 2)
  end
  server.port = port
  server.url = (options.tls and "https" or "http") .. "://127.0.0.1:" .. port
  return server
end

-- Starts a shell command in the background, stopped with the server.
function Server:spawn(command)
  local process = spawn(self.dir, CLEAN_ENV .. command, #self.processes + 1)
  self.processes[#self.processes + 1] = process
  return process
end

-- The curl words that reach this server: CA, token (unless token = false or
-- another string is given).
function Server:curl_words(options)
  options = options or {}
  local words = { "curl -sS --max-time " .. (options.max_time or 20) }
  if self.tls then
    words[#words + 1] = "--cacert " .. quote(self.ca_file)
  end
  local token = options.token
  if token == nil then
    token = self.token
  end
  if token then
    words[#words + 1] = "-H " .. quote("Authorization: Bearer " .. token)
  end
  return table.concat(words, " ")
end

-- One HTTP request; body is a table (sent as JSON) or a string. Returns the
-- status code, the body as text, and the body decoded when it is JSON.
function Server:request(method, path, body, options)
  options = options or {}
  local words = { self:curl_words(options), "-X", method, "-o", quote(self.dir .. "/response"),
    "-w", quote("%{http_code}") }
  if body ~= nil then
    local text = type(body) == "table" and cjson.encode(body) or body
    scratch.write_file(self.dir .. "/request", text)
    words[#words + 1] = "-H " .. quote("Content-Type: " .. (options.content_type or "application/json"))
    words[#words + 1] = "--data-binary @" .. quote(self.dir .. "/request")
  end
  words[#words + 1] = quote(self.url .. path)
  os.remove(self.dir .. "/response")
  local code = tonumber(shell(table.concat(words, " ") .. " 2>/dev/null"))
  local text = read_file(self.dir .. "/response") or ""
  local ok, decoded = pcall(cjson.decode, text)
  return code, text, ok and decoded or nil
end

-- A control request (/_fake/...); errors unless it answers 200.
function Server:control(path, document, method)
  local code, text, decoded = self:request(method or "POST", path, document or {})
  assert(code == 200, "control " .. path .. " answered " .. tostring(code) .. ": " .. text)
  return decoded
end

-- Seeds objects (one object or a list of them) through the control endpoint.
function Server:seed(objects)
  return self:control("/_fake/objects", objects[1] and { items = objects } or objects)
end

-- A kubeconfig for real clients (written once): this server, its test CA,
-- its token — or, with auth "cert", the client certificate instead.
function Server:kubeconfig(auth)
  local path = self.dir .. "/kubeconfig" .. (auth == "cert" and "-cert" or "")
  if not read_file(path) then
    local user = self.token and ("    token: " .. self.token .. "\n") or "    {}\n"
    if auth == "cert" then
      user = "    client-certificate: " .. self.client_cert .. "\n    client-key: " .. self.client_key .. "\n"
    end
    local ca = self.tls and ("    certificate-authority: " .. self.ca_file .. "\n") or ""
    scratch.write_file(path, "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n"
      .. "    server: " .. self.url .. "\n" .. ca
      .. "users:\n- name: spec\n  user:\n" .. user
      .. "contexts:\n- name: fake\n  context: {cluster: fake, user: spec}\ncurrent-context: fake\n")
  end
  return path
end

-- The requests the API answered (not the control ones), oldest first.
function Server:requests()
  return self:control("/_fake/requests", nil, "GET").requests
end

function Server:stop()
  for _, process in ipairs(self.processes) do
    process:kill()
  end
  self.processes = {}
  if self.process then
    self.process:kill()
    self.process = nil
  end
  scratch.remove_dir(self.dir)
  for i, server in ipairs(running) do
    if server == self then
      table.remove(running, i)
      break
    end
  end
end

function M.stop_all()
  while #running > 0 do
    running[#running]:stop()
  end
end

return M
