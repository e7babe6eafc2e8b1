-- `inspect traceMapData service NS NAME | localRedirect NS POLICY | balancing NS NAME`:
-- one object's frontends and backends as programmed in the kernel (the
-- pinned maps, entries carrying the object's service ID), and when it
-- programs less than it asks for, why — from the state the agent keeps
-- (balancing.agent_state): rejected and the reason, lost a conflict to an
-- older object, no usable endpoints, no local backend on this node, not
-- selected by nodeLabelSelector. Never asks the API server.
--
-- Policies are cluster-scoped: NS is accepted and not used (the seed's
-- checklist passes one). For `balancing`, NAME may also be the Service that
-- the policy's frontend matches (every such policy is traced).
local frontends = require("balancing.frontends")
local maps = require("balancing.inspect.maps")
local inspect_state = require("balancing.inspect.state")

local M = {}

local KINDS = {
  service = "Service", localRedirect = "LocalRedirectPolicy", balancing = "BalancingPolicy",
}

local function display_name(kind, namespace, name)
  return kind == "Service" and (namespace .. "/" .. name) or name
end

-- The objects the words name: a list of { kind, namespace, name, found }.
local function targets(state, word, namespace, name)
  local kind = KINDS[word]
  local found = state:find(kind, namespace, name)
  if found or word ~= "balancing" then
    return found and { { kind = kind, namespace = namespace, name = name, found = found } } or {}
  end
  local list = {}
  for _, policy in ipairs(state:policies_of_service(kind, namespace .. "/" .. name)) do
    list[#list + 1] = { kind = kind, namespace = "", name = policy, found = state:find(kind, "", policy) }
  end
  return list
end

-- Why an object shows (or lacks) what it does: its rejections and notes,
-- then what the maps show (no frontend at all, frontends without backends).
local function reasons_of(target, programmed)
  local reasons = {}
  local problem = target.found.problem or {}
  for _, reason in ipairs(problem.rejections or {}) do
    reasons[#reasons + 1] = "rejected: " .. reason
  end
  for _, note in ipairs(problem.notes or {}) do
    reasons[#reasons + 1] = note
  end
  if not target.found.owner then
    reasons[#reasons + 1] = "no service ID: nothing of it can be in the maps"
  elseif #programmed == 0 and #reasons == 0 then
    reasons[#reasons + 1] = "not programmed: no entry in the maps carries its ID "
      .. target.found.owner.id .. " (not applied yet, or the maps are another agent's)"
  end
  for _, frontend in ipairs(programmed) do
    if #frontend.backends == 0 then
      reasons[#reasons + 1] = string.format("no usable endpoints: %s:%s/%s (%s) has no backend%s; "
        .. "a client gets EHOSTUNREACH", frontend.address, frontend.port, frontend.protocol, frontend.mode,
        frontend.localOnly and " on this node" or "")
    end
  end
  return reasons
end

local function frontend_key(row)
  return table.concat({ row.type, row.address, row.port, row.protocol }, " ")
end

-- The raw rows of the maps that belong to the traced frontends.
local function raw_rows(handles, view)
  local keys = {}
  for _, frontend in ipairs(view) do
    keys[frontend_key(frontend)] = true
  end
  local raw = {}
  for _, name in ipairs({ "map_service", "map_backend", "map_affinity" }) do
    local rows = handles[name] and maps.rows(handles, name) or {}
    local kept = frontends.array()
    for _, row in ipairs(rows) do
      if keys[frontend_key(row)] then
        kept[#kept + 1] = row
      end
    end
    raw[name] = kept
  end
  return raw
end

-- run(options, word, namespace, name, handles, stdout, stderr) → exit status.
function M.run(options, word, namespace, name, handles, stdout, stderr)
  local state, err = inspect_state.load(options)
  if not state then
    stderr:write("inspect: traceMapData needs the agent's state: ", err,
      " — the agent keeps it under its --run-dir (default /run/balancing); give inspect the same --run-dir\n")
    return 1
  end
  local list = targets(state, word, namespace, name)
  if #list == 0 then
    local kind = KINDS[word]
    stderr:write(string.format("inspect: %s %s not found: the agent has no such object (state of %s)%s\n",
      kind, display_name(kind, namespace, name), tostring(state.document.written),
      word == "balancing" and ", nor a BalancingPolicy whose frontend is that Service" or ""))
    return 2
  end
  local view, view_err = maps.frontend_view(handles, state.ids)
  if not view then
    stderr:write("inspect: ", tostring(view_err), "\n")
    return 1
  end
  local document = { objects = frontends.array(), frontends = frontends.array() }
  local text = {}
  for _, target in ipairs(list) do
    local id = target.found.owner and tonumber(target.found.owner.id)
    local programmed = frontends.array()
    for _, frontend in ipairs(view) do
      if id and frontend.id == id then
        programmed[#programmed + 1] = frontend
        document.frontends[#document.frontends + 1] = frontend
      end
    end
    local reasons = reasons_of(target, programmed)
    local label = display_name(target.kind, target.namespace, target.name)
    document.objects[#document.objects + 1] = { kind = target.kind, name = label, id = id or 0,
      programmed = #programmed > 0, reasons = frontends.array(reasons) }
    local summary = #programmed == 0 and "not programmed"
      or string.format("%d frontend%s programmed", #programmed, #programmed == 1 and "" or "s")
    text[#text + 1] = string.format("%s%s %s (id %s): %s\n", #text > 0 and "\n" or "", target.kind, label,
      id and tostring(id) or "none", summary)
    if #programmed > 0 then
      text[#text + 1] = frontends.render_table(programmed)
    end
    for _, reason in ipairs(reasons) do
      text[#text + 1] = "  - " .. reason .. "\n"
    end
  end
  document.maps = raw_rows(handles, document.frontends)
  if options.json then
    stdout:write(frontends.encode(document), "\n")
  else
    stdout:write(table.concat(text))
  end
  return 0
end

return M
