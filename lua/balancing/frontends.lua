-- The frontend view of CONTRACTS.md ("The frontend view (JSON)"), shared by
-- `balancing-agent plan` and `inspect`: desired (or dumped) map entries turned
-- into what a user reads — dotted addresses, host-order ports, protocol, type
-- and mode names, the owner's name — in one stable order.
--
--   local view = frontends.from_entries({ entries_a, entries_b }, store.ids)
--   io.write(frontends.encode(frontends.document(view, rejected)), "\n")
--   io.write(frontends.render_table(view))
--
-- Output is byte-stable for the same input (expected outputs are checked in):
-- elements are sorted, JSON keys come in a fixed order, and the encoder is
-- our own rather than lua-cjson's, whose key order follows the hash table.
local bit = require("bit")
local cjson = require("cjson")
local abi = require("balancing.abi")
local parse_owner = require("balancing.store").parse_owner

local M = {}

-- Tables with this metatable encode as JSON arrays even when empty (lua-cjson
-- 2.1.0 as packaged has no empty_array): `"rejected": []`, never `{}`.
M.array_mt = { __name = "balancing.frontends.array" }

function M.array(t)
  return setmetatable(t or {}, M.array_mt)
end

-- Lookup priority for one address:port:protocol (ARCHITECTURE.md), which is
-- also the order in which the view lists entries on the same key.
local TYPE_ORDER = { localRedirect = 1, balancing = 2, service = 3 }

-- "10.96.0.10" → 0x0a60000a for sorting; the NodePort wildcard sorts first.
local function address_order(text)
  return abi.ipv4_order(text) or -1
end

-- "service/default/web" → "default/web"; "localRedirect/node-dns" → "node-dns"
-- (the store builds owner keys and reads them back).
local function owner_from_key(owner_key)
  local kind, namespace, name = parse_owner(tostring(owner_key))
  if kind == "Service" then
    return namespace .. "/" .. name
  elseif kind == "LocalRedirectPolicy" or kind == "BalancingPolicy" then
    return name
  end
  return tostring(owner_key)
end

-- The owner's name as CONTRACTS.md writes it: namespace/name for a Service,
-- the name for a (cluster-scoped) policy. The ids registry is the authority
-- (events and inspect use it too); the entries' owner key is the fallback
-- for an ID the registry does not know.
local function owner_name(ids, id, owner_key)
  local found = ids and ids:lookup(id)
  if found then
    if found.kind == "Service" then
      return (found.namespace or "") .. "/" .. found.name
    end
    return found.name
  end
  return owner_from_key(owner_key)
end

-- A from_entries call turns some 240,000 addresses into text on a large
-- cluster, most of them many times (an endpoint backs each port of its
-- Service, NodePorts too): each u32 is formatted once per call.
local function address_text(texts, value)
  local text = texts[value]
  if not text then
    text = abi.u32_to_ipv4(value)
    texts[value] = text
  end
  return text
end

local function backend_view(backend, texts)
  return {
    address = address_text(texts, backend.address),
    port = abi.ntohs(backend.port),
    ["local"] = bit.band(backend.flags, abi.C.BACKEND_FLAG_LOCAL) ~= 0,
  }
end

-- One view element from one frontend of an owner's entries; owner: its name.
local function frontend_view(frontend, owner, texts)
  local key, value = frontend.key, frontend.value
  local local_only = bit.band(value.flags, abi.C.SERVICE_FLAG_LOCAL_ONLY) ~= 0

  -- exactly what the datapath can pick: slots below total_count, and for a
  -- Local frontend only the first local_count of them
  local backends = frontend.backends or {}
  local count = math.min(#backends, tonumber(value.total_count))
  if local_only then
    count = math.min(count, tonumber(value.local_count))
  end
  local list = M.array()
  for slot = 1, count do
    list[slot] = backend_view(backends[slot], texts)
  end

  return {
    address = key.address == 0 and "*" or address_text(texts, key.address),
    port = abi.ntohs(key.port),
    protocol = abi.protocol_name(key.protocol),
    type = abi.nat_type_names[tonumber(key.nat_type)] or tostring(key.nat_type),
    mode = abi.nat_mode_names[tonumber(value.nat_mode)] or tostring(value.nat_mode),
    owner = owner,
    id = tonumber(value.service_id),
    affinitySeconds = tonumber(value.affinity_seconds),
    localOnly = local_only,
    backends = list,
  }
end

-- The order of the view: address (as a number), port, protocol, type, then
-- owner, id and mode. positions[element] holds address and port as one
-- number, made once per element rather than parsed at every comparison.
local function view_less_by(positions)
  return function(a, b)
    local pa, pb = positions[a], positions[b]
    if pa ~= pb then
      return pa < pb
    end
    if a.protocol ~= b.protocol then
      return a.protocol < b.protocol
    end
    local ta, tb = TYPE_ORDER[a.type] or 9, TYPE_ORDER[b.type] or 9
    if ta ~= tb then
      return ta < tb
    end
    -- the map has one entry per key; these only keep a malformed input (two
    -- owners claiming one key) in a stable order
    if a.owner ~= b.owner then
      return a.owner < b.owner
    end
    if a.id ~= b.id then
      return a.id < b.id
    end
    return a.mode < b.mode
  end
end

-- list_of_entries: array of reconcile results ({ owner = ..., frontends = {...} });
-- ids: the registry that maps IDs to owners (may be nil).
function M.from_entries(list_of_entries, ids)
  local view = M.array()
  local texts, positions = {}, {}
  for _, entries in ipairs(list_of_entries or {}) do
    -- an owner's frontends share its ID: its name is looked up once
    local last_id, owner
    for _, frontend in ipairs(entries.frontends or {}) do
      local id = tonumber(frontend.value.service_id)
      if id ~= last_id then
        last_id, owner = id, owner_name(ids, id, entries.owner)
      end
      local element = frontend_view(frontend, owner, texts)
      view[#view + 1] = element
      positions[element] = address_order(element.address) * 0x10000 + element.port
    end
  end
  table.sort(view, view_less_by(positions))
  return view
end

local function rejected_less(a, b)
  if a.kind ~= b.kind then
    return a.kind < b.kind
  end
  if a.name ~= b.name then
    return a.name < b.name
  end
  return a.reason < b.reason
end

-- Rejections as the document lists them: {kind, name, reason} strings, sorted,
-- without duplicates (two owners may report the same loser of a conflict).
function M.normalize_rejected(rejected)
  local list, seen = M.array(), {}
  for _, r in ipairs(rejected or {}) do
    local item = { kind = tostring(r.kind or ""), name = tostring(r.name or ""), reason = tostring(r.reason or "") }
    local id = item.kind .. "\0" .. item.name .. "\0" .. item.reason
    if not seen[id] then
      seen[id] = true
      list[#list + 1] = item
    end
  end
  table.sort(list, rejected_less)
  return list
end

-- The JSON document: { frontends = [...], rejected = [...] } (both arrays,
-- also when empty). Callers may add other keys (inspect's raw map data).
function M.document(view, rejected)
  return {
    frontends = setmetatable(view or {}, M.array_mt),
    rejected = M.normalize_rejected(rejected),
  }
end

-- ---------------------------------------------------------------- encoding
--
-- A plan of 10,000 Services is some 240,000 objects and a million values
-- (17 MB of text), and the encoder is written for that size (its figures:
-- docs/benchmarks.md, "Plan at scale"):
--   * one loop over an explicit stack rather than a recursion (see M.encode);
--   * an object whose keys are all in KEYS (every object of the view) is
--     written by its "shape": its keys in order with their separators, made
--     once per set of keys and depth, where a sort per object would be;
--   * a string with nothing to escape (nearly every one) goes out as it is
--     between two quote pieces, the rare others through lua-cjson;
--   * pieces go into one array with a running count; each one-line
--     container (a frontend) is joined into one piece when it ends, and the
--     whole once at the end. On a machine where fresh memory is dear (a VM's
--     page faults) the bytes allocated count as much as the instructions.
-- The bytes are those of the plain recursive encoder this replaced (the
-- checked-in expected plans and spec/unit/frontends_spec.lua hold them).

-- Keys in this order first (the order CONTRACTS.md shows), then any other
-- key in byte order.
local KEYS = {
  "frontends", "rejected",
  "address", "port", "protocol", "type", "mode", "owner", "id", "affinitySeconds", "localOnly",
  "backends", "local",
  "kind", "name", "reason",
}
local KEY_ORDER = {}
for i, key in ipairs(KEYS) do
  KEY_ORDER[key] = i
end

local function key_less(a, b)
  local ra, rb = KEY_ORDER[a], KEY_ORDER[b]
  if ra and rb then
    return ra < rb
  end
  if ra or rb then
    return ra ~= nil
  end
  return a < b
end

-- What lua-cjson escapes: control characters, DEL, '"', '\\' (and "/",
-- which we leave as it is).
local ESCAPED = '[%z\1-\31"\\\127]'

local function quote(s)
  if not s:find(ESCAPED) then
    return '"' .. s .. '"'
  end
  -- lua-cjson escapes "/" as "\/": valid JSON, but noisy in namespace/name
  -- (it escapes backslashes too, so every "\/" in its output is a slash)
  return (cjson.encode(s):gsub("\\/", "/"))
end

local function format_number(n)
  if n ~= n or n == math.huge or n == -math.huge then
    error("frontends.encode: cannot encode " .. tostring(n))
  end
  if n % 1 == 0 and n > -2 ^ 53 and n < 2 ^ 53 then
    return string.format("%d", n)
  end
  return string.format("%.17g", n)
end

local function is_array(t)
  if getmetatable(t) == M.array_mt then
    return true
  end
  local n = #t
  if n == 0 then
    return false
  end
  local count = 0
  for _ in pairs(t) do
    count = count + 1
  end
  return count == n
end

-- depth: containers at depth 0 and 1 are written one member per line (the
-- document, its arrays); deeper ones on one line, so that one frontend is one
-- line and diffs of expected outputs stay readable.
local layouts = {}
local function layout(depth)
  local l = layouts[depth]
  if not l then
    local multiline = depth < 2
    local pad = string.rep("  ", depth + 1)
    local open = multiline and "\n" .. pad or ""
    local close = multiline and "\n" .. string.rep("  ", depth) or ""
    l = { sep = multiline and ",\n" .. pad or ", ", open_array = "[" .. open, close_array = close .. "]",
      open_object = "{" .. open, close_object = close .. "}" }
    layouts[depth] = l
  end
  return l
end

-- shapes[depth][mask]: for the objects whose keys are the KEYS of the bits
-- of mask, { n = number of keys, keys = {...} in order, heads = {...} (what
-- goes before each value: "{" or a separator, the key, ": ") }.
local shapes = {}
local function shape(mask, depth)
  local by_mask = shapes[depth]
  if not by_mask then
    by_mask = {}
    shapes[depth] = by_mask
  end
  local found = by_mask[mask]
  if found then
    return found
  end
  local l = layout(depth)
  local keys, heads = {}, {}
  for rank, key in ipairs(KEYS) do
    if bit.band(mask, bit.lshift(1, rank - 1)) ~= 0 then
      heads[#keys + 1] = (#keys == 0 and l.open_object or l.sep) .. quote(key) .. ": "
      keys[#keys + 1] = key
    end
  end
  found = { n = #keys, keys = keys, heads = heads }
  by_mask[mask] = found
  return found
end

-- The keys of an object of other keys than KEYS: sorted (KEYS first).
local function sorted_keys(value)
  local keys = {}
  for key in pairs(value) do
    if type(key) ~= "string" then
      error("frontends.encode: object key " .. tostring(key) .. " is not a string")
    end
    keys[#keys + 1] = key
  end
  table.sort(keys, key_less)
  return keys
end

-- The set of KEYS an object has as a bit mask, or nil when it has another key.
local function key_mask(value)
  local mask = 0
  for key in pairs(value) do
    local rank = KEY_ORDER[key]
    if not rank then
      return nil
    end
    mask = bit.bor(mask, bit.lshift(1, rank - 1))
  end
  return mask
end

-- Containers from this depth on are written on one line (see layout); each
-- such line is joined into one piece when it is done, so that the pieces
-- waiting for the final join are some per frontend rather than some hundred.
local LINE_DEPTH = 2

-- What a container being written is (numbers: LuaJIT compiles a loop
-- variable that changes type, false one turn and a table the next, badly).
local ARRAY, SHAPED, SORTED = 0, 1, 2
local NO_KEYS = {}

-- The document (or any JSON-able table) as deterministic JSON text, without
-- a trailing newline.
--
-- One loop over an explicit stack, not a recursion: a recursive encoder runs
-- the same loop for the document, a frontend and a backend inside each
-- other, LuaJIT gives up compiling such nested runs of one loop ("inner loop
-- in root trace"), and the encoder then runs interpreted, several times
-- slower. Each turn writes the next member of the container on top (pushing
-- it when it is a container itself) or closes that container. The container
-- on top is in locals; the ones it is inside wait on the stack. No local
-- carries a value of changing type from one turn to the next (that too
-- stops the compiler: "persistent type instability").
function M.encode(document)
  local out, count = {}, 0
  local stack, top = {}, 0
  -- the container on top: the table, what it is, its keys in order (an
  -- object's), the pieces before its values (a SHAPED object's), the last
  -- member written, the number of members, its layout. The document starts
  -- inside a stand-in array with nothing around it.
  local container, what, keys, heads, position, size, l =
    { document }, ARRAY, NO_KEYS, NO_KEYS, 0, 1, { sep = "", close_array = "" }
  local depth, line_start = -1, 0
  while true do
    position = position + 1
    if position > size then
      if top == 0 then
        break
      end
      count = count + 1
      out[count] = what == ARRAY and l.close_array or l.close_object
      if depth == LINE_DEPTH then
        -- one piece for the line: the pieces array stays small
        local line = table.concat(out, "", line_start + 1, count)
        count = line_start + 1
        out[count] = line
      end
      container, what, keys, heads, position, size, l =
        stack[top - 6], stack[top - 5], stack[top - 4], stack[top - 3], stack[top - 2], stack[top - 1], stack[top]
      top = top - 7
      depth = depth - 1
    else
      local value
      if what == ARRAY then
        if position > 1 then
          count = count + 1
          out[count] = l.sep
        end
        value = container[position]
      else
        local key = keys[position]
        count = count + 1
        if what == SHAPED then
          out[count] = heads[position]
        else
          out[count] = (position == 1 and l.open_object or l.sep) .. quote(key) .. ": "
        end
        value = container[key]
      end

      local kind = type(value)
      local text
      if kind == "string" then
        if value:find(ESCAPED) then
          text = quote(value)
        else
          -- the string itself between two quote pieces: no new string made
          out[count + 1] = '"'
          out[count + 2] = value
          count = count + 2
          text = '"'
        end
      elseif kind == "number" then
        text = format_number(value)
      elseif kind == "boolean" then
        text = value and "true" or "false"
      elseif value == nil or value == cjson.null then
        text = "null"
      elseif kind == "cdata" then
        text = format_number(tonumber(value))
      elseif kind == "table" then
        local inner_what, inner_keys, inner_heads, inner_size
        if is_array(value) then
          inner_size = #value
          if inner_size == 0 then
            text = "[]"
          else
            inner_what, inner_keys, inner_heads = ARRAY, NO_KEYS, NO_KEYS
          end
        else
          local mask = key_mask(value)
          if mask == 0 then
            text = "{}"
          elseif mask then
            local s = shape(mask, depth + 1)
            inner_what, inner_keys, inner_heads, inner_size = SHAPED, s.keys, s.heads, s.n
          else
            inner_keys = sorted_keys(value)
            inner_what, inner_heads, inner_size = SORTED, NO_KEYS, #inner_keys
          end
        end
        if not text then
          stack[top + 1], stack[top + 2], stack[top + 3], stack[top + 4], stack[top + 5], stack[top + 6],
            stack[top + 7] = container, what, keys, heads, position, size, l
          top = top + 7
          depth = depth + 1
          if depth == LINE_DEPTH then
            line_start = count
          end
          container, what, keys, heads, position, size, l =
            value, inner_what, inner_keys, inner_heads, 0, inner_size, layout(depth)
          if what == ARRAY then
            count = count + 1
            out[count] = l.open_array
          end
        end
      else
        error("frontends.encode: cannot encode a " .. kind)
      end
      if text then
        count = count + 1
        out[count] = text
      end
    end
  end
  return table.concat(out, "", 1, count)
end

-- ------------------------------------------------------------------ tables

-- Aligned columns; the last column is not padded.
-- render_rows(header, rows) → aligned text: a header line and one line per
-- row (arrays of text cells), columns two spaces apart.
local function render_rows(header, rows)
  local widths = {}
  for i, cell in ipairs(header) do
    widths[i] = #cell
  end
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do
      widths[i] = math.max(widths[i], #cell)
    end
  end
  local lines = {}
  local function add(row)
    local cells = {}
    for i, cell in ipairs(row) do
      cells[i] = i < #row and cell .. string.rep(" ", widths[i] - #cell) or cell
    end
    lines[#lines + 1] = table.concat(cells, "  ")
  end
  add(header)
  for _, row in ipairs(rows) do
    add(row)
  end
  return table.concat(lines, "\n") .. "\n"
end

M.render_rows = render_rows

M.TABLE_COLUMNS = { "TYPE", "MODE", "ADDRESS", "PORT", "PROTO", "OWNER", "ID", "AFFINITY", "LOCAL-ONLY", "BACKENDS" }

-- "10.244.1.5:5353*,10.244.2.7:5353": slot order, "*" marks a backend on this
-- node, "-" when there is none.
function M.format_backends(backends)
  if not backends or #backends == 0 then
    return "-"
  end
  local parts = {}
  for i, b in ipairs(backends) do
    parts[i] = b.address .. ":" .. b.port .. (b["local"] and "*" or "")
  end
  return table.concat(parts, ",")
end

-- The view as an aligned table, one line per frontend (AFFINITY in seconds,
-- "-" for none).
function M.render_table(view)
  local rows = {}
  for i, f in ipairs(view or {}) do
    rows[i] = {
      f.type, f.mode, f.address, tostring(f.port), f.protocol, f.owner, tostring(f.id),
      f.affinitySeconds > 0 and tostring(f.affinitySeconds) .. "s" or "-",
      f.localOnly and "yes" or "no",
      M.format_backends(f.backends),
    }
  end
  local text = render_rows(M.TABLE_COLUMNS, rows)
  if #rows == 0 then
    text = text .. "(no frontends)\n"
  end
  return text
end

-- The rejected objects as a table under a "REJECTED" heading, or one line
-- saying there are none.
function M.render_rejected(rejected)
  local list = M.normalize_rejected(rejected)
  if #list == 0 then
    return "rejected: none\n"
  end
  local rows = {}
  for i, r in ipairs(list) do
    rows[i] = { r.kind, r.name, r.reason }
  end
  return "rejected:\n" .. render_rows({ "KIND", "NAME", "REASON" }, rows)
end

return M
