-- What the running agent counts and measures, registered once in a
-- balancing.metrics registry and served on /metrics (docs/agent.md
-- "Metrics" lists them).
--
--   local m = agent_metrics.new(agent)   -- agent: store, driver, source
--   m.syncs:inc()  m.sync_latency:observe(seconds)  ...
--   m:render()                           -- the text of /metrics
local core = require("balancing.core")
local log = require("balancing.log")
local metrics = require("balancing.metrics")
local translation_counters = require("balancing.translation_counters")

local M = {}

local KINDS = { "Service", "EndpointSlice", "Node", "Pod", "LocalRedirectPolicy", "BalancingPolicy" }


-- A per-kind counter of the API client's watches (absent with --manifests).
local function watch_counter(agent, field)
  return function()
    local out = {}
    if agent.source.stats then
      for kind, stats in pairs(agent.source:stats()) do
        out[#out + 1] = { { kind = kind }, stats[field] }
      end
    end
    return out
  end
end

-- balancing_translations_total: the datapath's per-CPU counters summed at
-- scrape time (map_translations, opened once). A scrape that cannot read
-- them leaves the family out and says why in the log (the registry names
-- the failed collector too).
local function translations(agent)
  local map
  return function()
    if not map then
      local err
      map, err = agent.dp:map("map_translations")
      if not map then
        log.warn("translation counters not read", { error = tostring(err) })
        error(err)
      end
    end
    local counters, err = translation_counters.read(map)
    if not counters then
      log.warn("translation counters not read", { error = tostring(err) })
      error(err)
    end
    return translation_counters.samples(counters, agent.store.ids)
  end
end

function M.new(agent)
  local registry = metrics.new()
  local self = { registry = registry }
  registry:collect("balancing_frontends", "Frontends programmed.", "gauge", function()
    return { { {}, (agent.driver:programmed()) } }
  end)
  registry:collect("balancing_backends", "Backend slots programmed, summed over the frontends.", "gauge", function()
    local _, backends = agent.driver:programmed()
    return { { {}, backends } }
  end)
  registry:collect("balancing_lua_heap_bytes", "Memory the agent's Lua state holds (live data and garbage"
    .. " not yet collected).", "gauge", function()
    return { { {}, math.floor(collectgarbage("count") * 1024) } }
  end)
  registry:collect("balancing_objects", "Objects of each kind in the store.", "gauge", function()
    local out = {}
    for i, kind in ipairs(KINDS) do
      out[i] = { { kind = kind }, agent.store:count(kind) }
    end
    return out
  end)
  self.syncs = registry:counter("balancing_syncs_total", "Sync rounds (read, reconcile, apply).")
  self.map_writes = registry:counter("balancing_map_writes_total",
    "Map entries the applies wrote or deleted.")
  self.map_write_errors = registry:counter("balancing_map_write_errors_total",
    "Owners' applies the kernel refused (each retried at the next sync).")
  self.stale_sockets = registry:counter("balancing_stale_sockets_destroyed_total",
    "Connected UDP sockets destroyed because their backend left the frontend.")
  self.lua_errors = registry:counter("balancing_lua_errors_total", "Owners whose reconcile failed in a Lua module.")
  self.lua_reloads = registry:counter("balancing_lua_reloads_total",
    "Changes of the Lua override directory's live modules, by result (accepted, refused).", { "result" })
  self.lua_reloads:inc(0, { result = "accepted" })
  self.lua_reloads:inc(0, { result = "refused" })
  self.events = registry:counter("balancing_events_total", "Translation events written to the log.")
  registry:collect("balancing_events_dropped_total", "Translation events lost: stage ring, the programs found "
    .. "the ring full; stage agent, the agent shed them unread when it could not keep up; stage output, their "
    .. "lines were refused by stdout's buffer, full behind a stalled reader.", "counter", function()
      local ring, shed, refused = 0, 0, 0
      if agent.event_drain then
        ring, shed, refused = agent.event_drain:dropped()
      end
      return { { { stage = "ring" }, ring }, { { stage = "agent" }, shed }, { { stage = "output" }, refused } }
    end)
  -- the agent's stdout (core/output.h): nil outside the binary
  registry:collect("balancing_log_lines_dropped_total", "Log lines (events apart: balancing_events_dropped_total"
    .. "{stage=\"output\"}) refused whole by stdout's buffer, full behind a stalled reader.", "counter", function()
      local stats = core.output_stats()
      return { { {}, stats and stats.log_lines_dropped or 0 } }
    end)
  registry:collect("balancing_output_buffer_bytes", "Bytes of log waiting in stdout's buffer for the reader.",
    "gauge", function()
      local stats = core.output_stats()
      return { { {}, stats and stats.buffered or 0 } }
    end)
  registry:collect("balancing_watch_restarts_total",
    "Lists and watches of a kind started again after a failure (a drop, an error, a stall).", "counter",
    watch_counter(agent, "restarts"))
  registry:collect("balancing_relists_total", "Lists of a kind started again after 410 Gone.", "counter",
    watch_counter(agent, "relists"))
  registry:collect("balancing_watch_events_total", "Objects changed by watch events, per kind.", "counter",
    watch_counter(agent, "events"))
  registry:collect("balancing_identity_patches_total",
    "Annotation patches sent (nodeId, nodeProxyIpv4, serviceId), by result.", "counter", function()
      local counters = agent.source.counters
      if not counters then
        return {}
      end
      return { { { result = "sent" }, counters.patches }, { { result = "conflict" }, counters.patch_conflicts },
        { { result = "error" }, counters.patch_errors } }
    end)
  registry:collect("balancing_translations_total",
    "Translations by frontend owner and result (ok, or the failure reason), counted in the datapath "
      .. "whatever --events says.", "counter", translations(agent))
  registry:collect("balancing_map_entries",
    "Entries of the maps the agent watches for filling up (map_redirect_loop), counted at scrape.", "gauge",
    function()
      agent.map_fill:check()
      return agent.map_fill:samples("entries")
    end)
  registry:collect("balancing_map_max_entries", "Capacity of those maps (their configured size).", "gauge",
    function()
      return agent.map_fill:samples("max_entries")
    end)
  self.sync_latency = registry:histogram("balancing_sync_latency_seconds",
    "An object's change received from the API server to its entries in the kernel.", metrics.LATENCY_BUCKETS)
  self.reconcile_duration = registry:histogram("balancing_reconcile_duration_seconds",
    "One reconcile round: the dirty owners through the Lua modules.", metrics.LATENCY_BUCKETS)
  self.apply_duration = registry:histogram("balancing_apply_duration_seconds",
    "One round's applies: its changed owners' entries into the maps.", metrics.LATENCY_BUCKETS)
  metrics.build_info(registry, { version = core.VERSION or "dev", abi = core.ABI_VERSION, luajit = jit.version })
  return setmetatable(self, { __index = M })
end

function M:render()
  return (self.registry:render())
end

return M
