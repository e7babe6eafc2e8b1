-- What the running agent leaves for `inspect` (docs/inspect.md): which
-- object holds which service ID (the owners' names of showMapData and
-- traceMapData), and why an object programs less than it asks for — its
-- rejections and the notes of its reconcile module ("not programmed: no
-- local backend on this node", ...). The maps say what is programmed; this
-- file says whose it is and why something is missing.
--
--   local state = agent_state.new{ path = run_dir .. "/state.json", node_name = , bpffs = }
--   state:record(round, driver)  -- after each reconcile round: the owners' rejections and notes
--   state:flush(store)           -- on the loop's tick and at stop: written when something changed
--   agent_state.read(path)       -- → document | nil, err (inspect)
--
-- The file is replaced atomically (a temporary file renamed over it), at
-- most once a tick and only when an ID was given or freed or an owner's
-- problems changed, so an endpoint churning costs nothing here. It stays
-- when the agent stops: inspect names the owners of the pinned entries with
-- the agent stopped. Document (version 1):
--   { "version": 1, "nodeName": ..., "bpffs": ..., "written": "RFC 3339",
--     "owners": [ { "id", "kind", "namespace", "name"[, "service": "ns/name"] } ],
--     "problems": [ { "kind", "namespace", "name", "rejections": [text], "notes": [text] } ] }
-- ("service": a policy's frontend Service, for `traceMapData balancing NS SERVICE`).
local cjson = require("cjson")
local lfs = require("lfs")
local log = require("balancing.log")
local parse_owner = require("balancing.store").parse_owner

local M = {}

M.VERSION = 1

local State = {}
State.__index = State

-- new{ path, node_name, bpffs }
function M.new(opts)
  return setmetatable({
    path = assert(opts.path, "agent_state.new: path is required"),
    node_name = opts.node_name, bpffs = opts.bpffs,
    problems = {},       -- owner key -> its problems as JSON text (only owners that have some)
    dirty = true,        -- the first flush writes
    ids_seen = nil,      -- the ID registry's change count at the last write
    warned = false,      -- an unwritable run directory is said once
  }, State)
end

-- A rejection's reason, or a notice as one line: its message, its fields'
-- reason after a colon and the other fields in brackets (the owner's own
-- name left out).
local function reasons(list)
  local texts = {}
  for i, item in ipairs(list or {}) do
    if item.reason then
      texts[i] = tostring(item.reason)
    else
      local fields = type(item.fields) == "table" and item.fields or {}
      local text, others = tostring(item.message), {}
      if fields.reason then
        text = text .. ": " .. tostring(fields.reason)
      end
      for key, value in pairs(fields) do
        if key ~= "reason" and key ~= "service" then
          others[#others + 1] = key .. " " .. tostring(value)
        end
      end
      table.sort(others)
      texts[i] = #others > 0 and (text .. " (" .. table.concat(others, ", ") .. ")") or text
    end
  end
  return texts
end

-- record(round, driver): the rejections and notes of the owners a round
-- reconciled (driver.rejections holds each one's latest).
function State:record(round, driver)
  local notes = {}
  for _, notice in ipairs(round.notices) do
    notes[notice.owner] = notes[notice.owner] or {}
    table.insert(notes[notice.owner], notice)
  end
  for owner in pairs(round.changed) do
    local rejected, noted = driver.rejections[owner], notes[owner]
    local text
    if (rejected and #rejected > 0) or noted then
      text = cjson.encode({ rejections = reasons(rejected), notes = reasons(noted) })
    end
    if self.problems[owner] ~= text then
      self.problems[owner], self.dirty = text, true
    end
  end
end

-- A policy's frontend Service ("ns/name"), when its frontend names one.
local function frontend_service(store, kind, name)
  local ok, spec = pcall(store.policy_spec, store, kind, name)
  local frontend = ok and type(spec) == "table" and spec.frontend
  if frontend and frontend.mode == "service" and frontend.service_name then
    return (frontend.namespace or "") .. "/" .. frontend.service_name
  end
end

local function mkdir_p(path)
  local at = path:sub(1, 1) == "/" and "" or "."
  for part in path:gmatch("[^/]+") do
    at = at .. "/" .. part
    if not lfs.attributes(at, "mode") then
      local ok, err = lfs.mkdir(at)
      if not ok and not lfs.attributes(at, "mode") then
        return nil, err
      end
    end
  end
  return true
end

local function write_file(path, chunks)
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then
    local ok, err = mkdir_p(dir)
    if not ok then
      return nil, err
    end
  end
  local temporary = path .. ".tmp"
  local file, err = io.open(temporary, "w")
  if not file then
    return nil, err
  end
  for _, chunk in ipairs(chunks) do
    local ok, write_err = file:write(chunk)
    if not ok then
      file:close()
      os.remove(temporary)
      return nil, write_err
    end
  end
  file:close()
  local ok, rename_err = os.rename(temporary, path)
  if not ok then
    os.remove(temporary)
    return nil, rename_err
  end
  return true
end

-- flush(store) → true when written (or nothing changed), nil, err when the
-- file could not be (logged once until a write succeeds again).
function State:flush(store)
  local ids = store.ids
  if not self.dirty and self.ids_seen == ids.changes then
    return true
  end
  -- one JSON object per owner, as separate chunks: 10,000 Services make a
  -- file of about 1 MB that is never one Lua string
  local chunks = { cjson.encode({ version = M.VERSION, nodeName = self.node_name, bpffs = self.bpffs,
    written = os.date("!%Y-%m-%dT%H:%M:%SZ") }):sub(1, -2), ',\n"owners":[' }
  local first = true
  ids:each_holder(function(id, kind, namespace, name)
    local owner = { id = id, kind = kind, namespace = namespace, name = name }
    if kind ~= "Service" then
      owner.service = frontend_service(store, kind, name)
    end
    chunks[#chunks + 1] = (first and "\n" or ",\n") .. cjson.encode(owner)
    first = false
  end)
  chunks[#chunks + 1] = '],\n"problems":['
  first = true
  for owner, text in pairs(self.problems) do
    local kind, namespace, name = parse_owner(owner)
    local problem = cjson.decode(text)
    problem.kind, problem.namespace, problem.name = kind, namespace or "", name
    chunks[#chunks + 1] = (first and "\n" or ",\n") .. cjson.encode(problem)
    first = false
  end
  chunks[#chunks + 1] = "]}\n"
  local ok, err = write_file(self.path, chunks)
  if not ok then
    if not self.warned then
      log.warn("agent state not written (inspect cannot name owners)", { path = self.path, error = tostring(err) })
      self.warned = true
    end
    return nil, err
  end
  self.dirty, self.ids_seen, self.warned = false, ids.changes, false
  return true
end

-- read(path) → the document, or nil, err (a missing file, or not ours).
function M.read(path)
  local file, err = io.open(path, "r")
  if not file then
    return nil, err
  end
  local text = file:read("*a")
  file:close()
  local ok, document = pcall(cjson.decode, text)
  if not ok or type(document) ~= "table" or document.version ~= M.VERSION then
    return nil, path .. ": not an agent state of version " .. M.VERSION
  end
  document.owners = type(document.owners) == "table" and document.owners or {}
  document.problems = type(document.problems) == "table" and document.problems or {}
  return document
end

return M
