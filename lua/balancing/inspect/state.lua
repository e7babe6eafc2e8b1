-- The running agent's state file (balancing.agent_state) as inspect reads
-- it: the owners' names for the frontend view, and the objects traceMapData
-- asks about.
--
--   local state, err = inspect_state.load(options)  -- options.run_dir, options.bpffs
--   state.ids:lookup(id)                             -- as balancing.ids' registry answers
--   state:find(kind, namespace, name)                -- → { owner, problem } | nil
--   state:policies_of_service(kind, "ns/name")       -- the policies whose frontend is that Service
local agent_state = require("balancing.agent_state")

local M = {}

local State = {}
State.__index = State

local function without_trailing_slash(path)
  return (tostring(path or ""):gsub("(.)/+$", "%1"))
end

function M.path(options)
  return without_trailing_slash(options.run_dir) .. "/state.json"
end

-- load(options) → state, or nil and why (no file, another pin directory's).
function M.load(options)
  local path = M.path(options)
  local document, err = agent_state.read(path)
  if not document then
    return nil, string.format("no agent state at %s (%s)", path, tostring(err))
  end
  if without_trailing_slash(document.bpffs) ~= without_trailing_slash(options.bpffs) then
    return nil, string.format("the agent state at %s is of pin directory %s, not %s", path,
      tostring(document.bpffs), options.bpffs)
  end
  local by_id = {}
  for _, owner in ipairs(document.owners) do
    by_id[tonumber(owner.id)] = owner
  end
  local self = setmetatable({ document = document, path = path, by_id = by_id }, State)
  self.ids = { lookup = function(_, id)
    return by_id[tonumber(id)]
  end }
  return self
end

local function same_object(item, kind, namespace, name)
  return item.kind == kind and item.name == name and (kind ~= "Service" or item.namespace == namespace)
end

-- find(kind, namespace, name) → { owner = the ID holder or nil, problem =
-- its rejections and notes or nil }, or nil when the agent knows neither.
-- namespace matters for Services only (policies are cluster-scoped).
function State:find(kind, namespace, name)
  local found = {}
  for _, owner in ipairs(self.document.owners) do
    if same_object(owner, kind, namespace, name) then
      found.owner = owner
    end
  end
  for _, problem in ipairs(self.document.problems) do
    if same_object(problem, kind, namespace, name) then
      found.problem = problem
    end
  end
  return (found.owner or found.problem) and found or nil
end

-- The names of the policies of kind whose frontend is the Service "ns/name".
function State:policies_of_service(kind, service)
  local names = {}
  for _, owner in ipairs(self.document.owners) do
    if owner.kind == kind and owner.service == service then
      names[#names + 1] = owner.name
    end
  end
  table.sort(names)
  return names
end

return M
