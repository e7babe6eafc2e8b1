-- The frontend view of CONTRACTS.md as the specs read it (frontends.from_entries,
-- the "frontends" of `plan --json` and `inspect --json`): one element picked
-- by its key, and two views compared as sets.
local M = {}

-- find(view, address, port, protocol[, type]) → the element for that
-- address:port/protocol (of that type: service, localRedirect, balancing;
-- the first of any type when none is given), or nil.
function M.find(view, address, port, protocol, type_name)
  for _, f in ipairs(view) do
    if f.address == address and f.port == port and f.protocol == protocol
        and (type_name == nil or f.type == type_name) then
      return f
    end
  end
  return nil
end

-- The key of an element: "address port protocol type".
function M.key(f)
  return table.concat({ tostring(f.address), tostring(f.port), tostring(f.protocol), tostring(f.type) }, " ")
end

-- An element as one comparable line: mode, id, affinitySeconds, localOnly and
-- its backends as a set ("address:port" with "*" for a local one, sorted);
-- with its owner when with_owner.
function M.line(f, with_owner)
  local backends = {}
  for i, b in ipairs(f.backends or {}) do
    backends[i] = tostring(b.address) .. ":" .. tostring(b.port) .. (b["local"] and "*" or "")
  end
  table.sort(backends)
  local words = { "mode=" .. tostring(f.mode), "id=" .. tostring(f.id),
    "affinitySeconds=" .. tostring(f.affinitySeconds), "localOnly=" .. tostring(f.localOnly),
    "backends=" .. table.concat(backends, ",") }
  if with_owner then
    words[#words + 1] = "owner=" .. tostring(f.owner)
  end
  return table.concat(words, " ")
end

-- The view as a set: key → element; a key listed twice is an error (the
-- contract has one element per programmed entry).
function M.by_key(view, what)
  local set = {}
  for _, f in ipairs(view) do
    local key = M.key(f)
    assert(set[key] == nil, (what or "view") .. " lists " .. key .. " twice")
    set[key] = f
  end
  return set
end

-- Compares two views as sets keyed by address, port, protocol, type (each
-- element's mode, id, affinitySeconds, localOnly and backends as a set); the
-- owner too wherever `actual` gives a non-empty one. Returns nil when they
-- agree, else the differences, one per line ("-" expected only, "+" actual
-- only, with the key).
function M.difference(expected, actual)
  local want, got = M.by_key(expected, "expected"), M.by_key(actual, "actual")
  local keys, seen = {}, {}
  for key in pairs(want) do
    keys[#keys + 1], seen[key] = key, true
  end
  for key in pairs(got) do
    if not seen[key] then
      keys[#keys + 1] = key
    end
  end
  table.sort(keys)
  local lines = {}
  for _, key in ipairs(keys) do
    local a, b = want[key], got[key]
    local with_owner = b ~= nil and type(b.owner) == "string" and b.owner ~= ""
    local left, right = a and M.line(a, with_owner), b and M.line(b, with_owner)
    if left ~= right then
      if left then
        lines[#lines + 1] = "- " .. key .. " " .. left
      end
      if right then
        lines[#lines + 1] = "+ " .. key .. " " .. right
      end
    end
  end
  return #lines > 0 and table.concat(lines, "\n") or nil
end

-- How many elements of the view carry a non-empty owner.
function M.owners_given(view)
  local count = 0
  for _, f in ipairs(view) do
    if type(f.owner) == "string" and f.owner ~= "" then
      count = count + 1
    end
  end
  return count
end

return M
