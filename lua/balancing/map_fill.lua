-- How full the agent-owned plain-hash maps are: today map_redirect_loop,
-- written through the applier (a pair it refuses is its policy's "apply
-- failed"), whose filling up is said on its own. It must stay a plain hash
-- (an LRU would evict a backend pod's exemption without a word, and
-- node-local DNS would be sent back to itself), so a full one must be said
-- instead: a "map full" warning
-- once when it fills, an info line when it has room again, and the gauges
-- balancing_map_entries{map} / balancing_map_max_entries{map}.
--
--   local fill = map_fill.new(dp, { "map_redirect_loop" })
--   fill:check()    -- after a sync round, and at each scrape
--   fill:samples("entries") / fill:samples("max_entries")   -- for /metrics
local log = require("balancing.log")

local M = {}

local MapFill = {}
MapFill.__index = MapFill

function M.new(dp, names)
  return setmetatable({ dp = dp, names = names, maps = {}, last = {}, full = {} }, MapFill)
end

local function open(self, name)
  local map = self.maps[name]
  if not map then
    local err
    map, err = self.dp:map(name)
    if not map then
      return nil, err
    end
    self.maps[name] = map
  end
  return map
end

-- Counts each map's entries (a dump: these maps hold thousands, not
-- hundreds of thousands) and says when one becomes full or has room again.
function MapFill:check()
  for _, name in ipairs(self.names) do
    local map, err = open(self, name)
    local entries = map and map:dump()
    if not entries then
      err = err or "dump failed"
      log.warn("map not counted", { map = name, error = tostring(err) })
    else
      local count, max = #entries, map.max_entries
      self.last[name] = { entries = count, max_entries = max }
      local full = count >= max
      if full and not self.full[name] then
        log.warn("map full", { map = name, entries = count, max_entries = max,
          hint = "new entries are refused until some go; raise its size (docs/agent.md, Map sizes)" })
      elseif not full and self.full[name] then
        log.info("map has room again", { map = name, entries = count, max_entries = max })
      end
      self.full[name] = full
    end
  end
end

-- field: "entries" or "max_entries"; the figures of the last check.
function MapFill:samples(field)
  local out = {}
  for _, name in ipairs(self.names) do
    local last = self.last[name]
    if last then
      out[#out + 1] = { { map = name }, last[field] }
    end
  end
  return out
end

return M
