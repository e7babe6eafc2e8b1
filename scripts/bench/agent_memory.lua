#!/usr/bin/env luajit
-- Where the agent's memory goes, measured in one LuaJIT process on the
-- cluster of scripts/bench/agent (the agent has no Lua console): the same
-- modules the agent runs — balancing.source decoding LIST pages (as the
-- fake server sends them: 500 objects a page) and trimming into
-- balancing.store, then the reconcile driver's first full round — with the
-- live Lua heap (collectgarbage("count") after full collections) after each
-- step, and what each step allocates (collector stopped).
--
--   luajit scripts/bench/agent_memory.lua [--services N] [--endpoints N] [--nodes N]
--
-- No kernel, no root: the applier's shadow (C, malloc) and libcurl are not
-- in it; scripts/bench/agent gives the whole process's RSS.
local script_dir = (arg and arg[0] or "scripts/bench/agent_memory.lua"):match("^(.*)/[^/]*$") or "."
local repo = script_dir .. "/../.."
package.path = table.concat({ repo .. "/lua/?.lua", repo .. "/lua/?/init.lua", script_dir .. "/?.lua",
  package.path }, ";")

local cjson = require("cjson")
local log = require("balancing.log")
local store_module = require("balancing.store")
local source = require("balancing.source")
local reconciler = require("balancing.reconciler")
local cluster_module = require("agent_cluster")
-- luacheck: ignore 311 331
-- (tables set to nil are given back to the collector before the next measurement)
pcall(function() require("balancing.jit_options").apply() end)

local options = { services = 10000, endpoints = 100000, nodes = 20 }
for i = 1, #arg, 2 do
  local name = assert(arg[i]:match("^%-%-(.+)$"), "bad argument " .. arg[i])
  options[name] = name == "write-pages" and arg[i + 1]
    or assert(tonumber(arg[i + 1]), "--" .. name .. " takes a number")
end
log.set_level("error")

local function live_kib()
  collectgarbage()
  collectgarbage()
  return collectgarbage("count")
end

-- this process's resident memory (KiB): what the Lua heap holds plus what
-- its allocator keeps mapped
local function rss_kib()
  local file = io.open("/proc/self/status")
  local text = file:read("*a")
  file:close()
  return tonumber(text:match("VmRSS:%s+(%d+)")), tonumber(text:match("VmHWM:%s+(%d+)"))
end

local now, monotonic
do
  local ffi = require("ffi")
  pcall(ffi.cdef, "struct timespec { long tv_sec; long tv_nsec; };")
  pcall(ffi.cdef, "int clock_gettime(int clock_id, struct timespec *tp);")
  local ts = ffi.new("struct timespec")
  monotonic = function()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
  end
  now = function()
    ffi.C.clock_gettime(2, ts) -- CLOCK_PROCESS_CPUTIME_ID
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
  end
end

local function mib(kib)
  return string.format("%.1f MiB", kib / 1024)
end

local function say(...)
  io.stdout:write(string.format(...), "\n")
  io.stdout:flush()
end

-- The LIST pages as the server sends them (JSON text, 500 items a page),
-- made by a child process (this script with --write-pages DIR) so that this
-- process's heap and RSS start with the page texts alone.
local KINDS = { { "Node", "v1", "nodes" }, { "Service", "v1", "services" },
  { "EndpointSlice", "discovery.k8s.io/v1", "slices" } }
if options["write-pages"] then
  local cluster = cluster_module.generate(options)
  for k, kind in ipairs(KINDS) do
    local items = cluster[kind[3]]
    for first = 1, #items, 500 do
      local page = {}
      for i = first, math.min(first + 499, #items) do
        page[#page + 1] = items[i]
      end
      -- every page but the last has a continue token: the kind is complete at the last
      local continue = first + 500 <= #items and ("page-" .. first) or nil
      local file = assert(io.open(string.format("%s/%d-%06d.json", options["write-pages"], k, first), "wb"))
      file:write(cjson.encode({ kind = kind[1] .. "List", apiVersion = kind[2],
        metadata = { resourceVersion = "2000", continue = continue }, items = page }))
      file:close()
    end
  end
  local file = assert(io.open(options["write-pages"] .. "/counts", "wb"))
  file:write(cjson.encode(cluster.counts))
  file:close()
  os.exit(0)
end

local pages_dir = os.tmpname()
os.remove(pages_dir)
assert(os.execute("mkdir " .. pages_dir))
local function remove_pages()
  os.execute("rm -rf '" .. pages_dir .. "'")
end
local ok = os.execute(string.format("luajit %s --write-pages %s --services %d --endpoints %d --nodes %d",
  arg[0], pages_dir, options.services, options.endpoints, options.nodes))
if ok ~= 0 and ok ~= true then
  remove_pages()
  error("could not write the pages")
end
local lists, text_bytes = {}, 0
do
  local names = {}
  local pipe = io.popen("ls " .. pages_dir)
  for name in pipe:lines() do
    names[#names + 1] = name
  end
  pipe:close()
  table.sort(names)
  for k, kind in ipairs(KINDS) do
    local list = { kind = kind[1], pages = {} }
    for _, name in ipairs(names) do
      if name:match("^" .. k .. "%-") then
        local file = io.open(pages_dir .. "/" .. name, "rb")
        list.pages[#list.pages + 1] = file:read("*a")
        file:close()
        text_bytes = text_bytes + #list.pages[#list.pages]
      end
    end
    lists[k] = list
  end
end
local counts
do
  local file = io.open(pages_dir .. "/counts", "rb")
  counts = cjson.decode(file:read("*a"))
  file:close()
end
remove_pages()

-- 0. as the agent does it, first, in a fresh heap: the pages through
-- balancing.source with the collector running; the process's RSS against
-- the live heap afterwards
local rss_before = rss_kib()
local heap_before = live_kib()
local store = store_module.new({ node_name = "node-1" })
local load_started = now()
local pages_per_collection = options["pages-per-collection"] or require("balancing.kube_source").PAGES_PER_COLLECTION
local pages = 0
for _, list in ipairs(lists) do
  local src = source.new(store, list.kind)
  for _, page in ipairs(list.pages) do
    assert(src:list_page(page))
    pages = pages + 1
    if pages % pages_per_collection == 0 then
      collectgarbage() -- as balancing.kube_source does
    end
  end
end
local load_seconds = now() - load_started
local heap_after = live_kib()
local rss_after, hwm_after = rss_kib()
store = nil
live_kib()

local base = live_kib()
say("cluster: %d Services, %d EndpointSlices (%d endpoints), %d Nodes; LIST pages %.1f MB of JSON",
  counts.services, counts.slices, counts.endpoints, counts.nodes, text_bytes / 1e6)

-- 1. the objects decoded as they come, untrimmed (what a store without
-- balancing.trim would hold)
local untrimmed = {}
for _, list in ipairs(lists) do
  for _, page in ipairs(list.pages) do
    for _, item in ipairs(cjson.decode(page).items) do
      untrimmed[#untrimmed + 1] = item
    end
  end
end
local untrimmed_kib = live_kib() - base
untrimmed = nil
base = live_kib()

-- 1b. trimmed (balancing.trim) but outside the store, as tables (what the
-- store held before it kept Services and EndpointSlices as text)
local trim = require("balancing.trim")
local trimmed_kib = 0
do
  local held = {}
  for _, list in ipairs(lists) do
    for _, page in ipairs(list.pages) do
      for _, item in ipairs(cjson.decode(page).items) do
        item.kind = list.kind
        held[#held + 1] = trim.object(item)
      end
    end
  end
  trimmed_kib = live_kib() - base
end
base = live_kib()

-- 2. the store, through balancing.source (decode, trim, ingest), as the
-- agent's first LIST; what it allocates with the collector stopped
store = store_module.new({ node_name = "node-1" })
collectgarbage("stop")
local before = collectgarbage("count")
for _, list in ipairs(lists) do
  local src = source.new(store, list.kind)
  for _, page in ipairs(list.pages) do
    assert(src:list_page(page))
  end
end
local load_allocated = collectgarbage("count") - before
collectgarbage("restart")
local store_kib = live_kib() - base
local objects = store:count()

-- 3. the first full round: every owner's desired entries, counted by the
-- driver as the agent's (keep_entries = false: apply keeps what it wrote)
local driver = reconciler.new({ store = store, node_name = "node-1", keep_entries = false })
local before_round = live_kib()
collectgarbage("stop")
before = collectgarbage("count")
local round_started = now()
local round = driver:run(store:owners()) -- luacheck: ignore 231
local round_seconds = now() - round_started
local round_allocated = collectgarbage("count") - before
collectgarbage("restart")
local with_round = live_kib()
round = nil
local driver_kib = live_kib() - before_round
local round_kib = with_round - before_round
local frontends, backends = driver:programmed()

-- 4. single changes: an EndpointSlice modified (one endpoint's address) as
-- a watch line, through balancing.source and the driver, as the agent takes
-- each event (the applier's part, C, is not in it)
local change_ms = {}
do
  local slices
  for _, list in ipairs(lists) do
    if list.kind == "EndpointSlice" then
      slices = cjson.decode(list.pages[1]).items
    end
  end
  local src = source.new(store, "EndpointSlice")
  store:take_dirty() -- (the load's: the first round above took every owner)
  for i = 1, 3000 do
    local slice = slices[i % #slices + 1]
    slice.kind = "EndpointSlice"
    slice.endpoints[1].addresses[1] = string.format("100.64.%d.%d", math.floor(i / 250) % 250, i % 250)
    slice.metadata.resourceVersion = tostring(100000 + i)
    local line = cjson.encode({ type = "MODIFIED", object = slice })
    local started = monotonic()
    src:watch_line(line)
    driver:run(store:take_dirty())
    change_ms[i] = (monotonic() - started) * 1e3
  end
  table.sort(change_ms)
end

-- the texts are in the store's text arena (C memory, not in the Lua heap)
local arena = store.texts and store.texts:stats() or { texts = 0, live_bytes = 0, capacity = 0 }
local arena_kib = arena.live_bytes / 1024
local total = store_kib + driver_kib
say("live data after full collections (LuaJIT 2.1, GC64: %s):", tostring(jit and jit.arch))
say("  store (%d objects): %s — %s in the Lua heap (keys, indexes, IDs) and %s of text in its text arena"
  .. " (%d texts, buffer %s); %.0f B per object, %.0f B per endpoint", objects, mib(store_kib + arena_kib),
  mib(store_kib), mib(arena_kib), arena.texts, mib(arena.capacity / 1024), (store_kib + arena_kib) * 1024 / objects,
  (store_kib + arena_kib) * 1024 / counts.endpoints)
-- The arena's codec (core/text_codec.c): every text the store holds, put
-- into fresh arenas — as they are, deflated alone (an empty dictionary), and
-- deflated against the store's dictionary — and read back from each.
if store.texts then
  local texts, text_bytes_total = {}, 0
  for _, kind in ipairs({ "Service", "EndpointSlice" }) do
    for _, held in pairs(store.objects[kind]) do
      if type(held) == "number" then
        texts[#texts + 1] = store.texts:get(held)
        text_bytes_total = text_bytes_total + #texts[#texts]
      end
    end
  end
  local function codec_run(dictionary)
    local fresh, refs = require("balancing.core").text_arena(dictionary), {}
    local started = monotonic()
    for i, text in ipairs(texts) do
      refs[i] = fresh:put(text)
    end
    local put_us = (monotonic() - started) / #texts * 1e6
    started = monotonic()
    for i = 1, #texts do
      fresh:get(refs[i])
    end
    return fresh:stats().live_bytes, put_us, (monotonic() - started) / #texts * 1e6
  end
  local _, plain_put, plain_get = codec_run(nil)
  local alone = codec_run("")
  local held, put_us, get_us = codec_run(require("balancing.packed").DICTIONARY)
  say("  its text arena: %d texts, %.1f MB of text held in %.1f MB (%.1f×; deflated alone %.1f×); a put %.1f µs"
    .. " and a get %.1f µs (as they are: %.1f and %.1f µs)", #texts, text_bytes_total / 1e6, held / 1e6,
    text_bytes_total / held, text_bytes_total / alone, put_us, get_us, plain_put, plain_get)
end
say("  the same objects decoded but untrimmed: %s; trimmed, as tables: %s", mib(untrimmed_kib), mib(trimmed_kib))
say("  reconcile driver (%d frontends, %d backend slots counted; their entries are not kept): %s",
  frontends, backends, mib(driver_kib))
say("  the round's result (round.changed, kept only until applied): %s", mib(round_kib - driver_kib))
say("  together %s in the Lua heap, %s in the text arena", mib(total), mib(arena_kib))
say("one EndpointSlice change (watch line → source → store → driver; collector running): p50 %.3f ms, p99 %.3f ms,"
  .. " max %.3f ms (3,000 changes)", change_ms[1500], change_ms[2970], change_ms[3000])
say("allocated (collector stopped): the LIST load %s (%.1f× the JSON text), the first round %s",
  mib(load_allocated), load_allocated * 1024 / text_bytes, mib(round_allocated))
say("CPU: the LIST load %.2f s (collector running), the first round %.2f s (collector stopped)", load_seconds,
  round_seconds)
say("process RSS around the agent-like load (collector running; measured after full collections): %s → %s"
  .. " (peak %s), while the live heap went %s → %s: %s of the %s added is memory the allocator keeps mapped"
  .. " that the heap no longer uses", mib(rss_before), mib(rss_after), mib(hwm_after), mib(heap_before),
  mib(heap_after), mib((rss_after - rss_before) - (heap_after - heap_before)), mib(rss_after - rss_before))
say("with LuaJIT's default pause (200 %%) the heap grows to about twice the live data before a cycle ends:"
  .. " about %s for this live data", mib(2 * total))
