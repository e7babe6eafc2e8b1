local cjson = require("cjson")
local lfs = require("lfs")
local metrics = require("balancing.metrics")

-- A registry with one of everything, labels that need escaping included.
local function full_registry()
  local registry = metrics.new()
  registry:counter("balancing_syncs_total", "Source syncs."):inc(3)
  local restarts = registry:counter("balancing_watch_restarts_total", "Watches restarted.", { "kind" })
  restarts:inc(1, { kind = "Service" })
  restarts:inc(2, { kind = "Node" })
  local latency = registry:histogram("balancing_sync_latency_seconds", "Change received → entries in the kernel.")
  for _, seconds in ipairs({ 0.0002, 0.003, 0.003, 0.7, 42 }) do
    latency:observe(seconds)
  end
  local apply = registry:histogram("balancing_apply_duration_seconds", "Applies.", { 0.01, 0.1 }, { "owner" })
  apply:observe(0.05, { owner = "service/default/web" })
  registry:gauge("balancing_weird", 'Help with a \\ backslash,\na newline and a " quote.', { "path" })
    :set(-1.25, { path = 'C:\\dir "quoted"\nnext' })
  registry:collect("balancing_objects", "Objects in the store.", "gauge", function()
    return { { { kind = "Service" }, 2 }, { { kind = "EndpointSlice" }, 3 } }
  end)
  metrics.build_info(registry, { version = "0.1.0", abi = 3, luajit = "LuaJIT 2.1.0-beta3" })
  return registry
end

-- Debian's python3 (where scripts/setup.sh installs python3-prometheus-client),
-- not a python3 shim first on PATH; -I: no user site or PYTHON* variables.
local function python()
  return lfs.attributes("/usr/bin/python3", "mode") and "/usr/bin/python3 -I" or "python3 -I"
end

local PARSE_WITH_PROMETHEUS_CLIENT = [[
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    print(json.dumps({"name": family.name, "type": family.type, "help": family.documentation,
                      "samples": [[s.name, s.labels, repr(s.value)] for s in family.samples]}))
]]

-- The families prometheus_client's parser reads from text, one table each.
local function prometheus_client_families(text)
  local path = os.tmpname()
  local file = assert(io.open(path, "w"))
  file:write(text)
  file:close()
  local pipe = assert(io.popen(python() .. " -c '" .. PARSE_WITH_PROMETHEUS_CLIENT .. "' " .. path .. " 2>&1"))
  local output = pipe:read("*a")
  local ok = pipe:close()
  os.remove(path)
  assert(ok, "prometheus_client refused the text: " .. output)
  local families = {}
  for line in output:gmatch("[^\n]+") do
    families[#families + 1] = cjson.decode(line)
  end
  return families
end

describe("balancing.metrics", function()
  local registry

  before_each(function()
    registry = metrics.new()
  end)

  describe("a counter", function()
    it("renders HELP, TYPE and its one series, at 0 before the first inc", function()
      registry:counter("balancing_syncs_total", "Source syncs.")
      assert.equals("# HELP balancing_syncs_total Source syncs.\n" ..
        "# TYPE balancing_syncs_total counter\n" ..
        "balancing_syncs_total 0\n", registry:render())
    end)

    it("adds 1 by default and n when given", function()
      local syncs = registry:counter("balancing_syncs_total", "Source syncs.")
      syncs:inc()
      syncs:inc(4)
      assert.equals(5, syncs:get())
      assert.matches("\nbalancing_syncs_total 5\n$", registry:render())
    end)

    it("never goes down", function()
      local syncs = registry:counter("balancing_syncs_total", "Source syncs.")
      assert.has_error(function() syncs:inc(-1) end,
        "counter balancing_syncs_total: inc by -1, counters only go up")
    end)

    it("with declared labels shows a series per label set once it is used", function()
      local restarts = registry:counter("balancing_watch_restarts_total", "Watches restarted.", { "kind" })
      assert.equals("# HELP balancing_watch_restarts_total Watches restarted.\n" ..
        "# TYPE balancing_watch_restarts_total counter\n", registry:render())
      restarts:inc(1, { kind = "Service" })
      restarts:inc(0, { kind = "Node" })
      restarts:inc(2, { kind = "Service" })
      assert.equals("# HELP balancing_watch_restarts_total Watches restarted.\n" ..
        "# TYPE balancing_watch_restarts_total counter\n" ..
        'balancing_watch_restarts_total{kind="Node"} 0\n' ..
        'balancing_watch_restarts_total{kind="Service"} 3\n', registry:render())
    end)

    it("finds a label set by its values, whatever table carries them", function()
      local writes = registry:counter("writes_total", "Writes.", { "map", "cpu" })
      writes:inc(1, { map = "map_service", cpu = 1 })
      writes:inc(1, { cpu = 1, map = "map_service" })
      writes:inc(1, { cpu = "1", map = "map_service" }) -- the same text: the same series
      assert.equals(3, writes:get({ map = "map_service", cpu = 1 }))
      assert.equals(1, #metrics.parse(registry:render()).writes_total)
    end)

    it("checks a label set's names when the set is first used", function()
      local restarts = registry:counter("restarts_total", "Restarts.", { "kind" })
      local syncs = registry:counter("syncs_total", "Syncs.")
      assert.has_error(function() restarts:inc(1, {}) end, "metric restarts_total: label kind missing")
      assert.has_error(function() restarts:inc(1, { kind = "Node", knid = "x" }) end,
        "metric restarts_total: label knid is not declared")
      assert.has_error(function() restarts:inc(1) end, "metric restarts_total needs labels kind")
      assert.has_error(function() syncs:inc(1, { kind = "Node" }) end,
        "metric syncs_total declares no labels: call it without")
    end)
  end)

  describe("a gauge", function()
    it("holds the value last set, per label set", function()
      local frontends = registry:gauge("balancing_frontends", "Frontends programmed.")
      local objects = registry:gauge("objects", "Objects.", { "kind" })
      frontends:set(7)
      frontends:set(4)
      objects:set(2.5, { kind = "Pod" })
      assert.equals("# HELP balancing_frontends Frontends programmed.\n" ..
        "# TYPE balancing_frontends gauge\n" ..
        "balancing_frontends 4\n" ..
        "# HELP objects Objects.\n" ..
        "# TYPE objects gauge\n" ..
        'objects{kind="Pod"} 2.5\n', registry:render())
    end)

    it("renders values Prometheus reads back exactly", function()
      local gauge = registry:gauge("g", "G.", { "i" })
      local values = { 0.1 + 0.2, 1e21, -3, 1 / 0, -1 / 0, 2 ^ 60 }
      for i, value in ipairs(values) do
        gauge:set(value, { i = i })
      end
      local samples = metrics.parse(registry:render()).g
      assert.equals(#values, #samples)
      for _, sample in ipairs(samples) do
        assert.equals(values[tonumber(sample.labels.i)], sample.value)
      end
      assert.matches('\ng{i="1"} 0.30000000000000004\n', registry:render(), 1, true)
      assert.matches('\ng{i="4"} +Inf\n', registry:render(), 1, true)
    end)
  end)

  describe("a histogram", function()
    it("renders cumulative buckets, +Inf, _sum and _count", function()
      local latency = registry:histogram("sync_seconds", "Syncs.", { 0.001, 0.01, 1 })
      for _, seconds in ipairs({ 0.0005, 0.001, 0.005, 0.5, 5 }) do
        latency:observe(seconds)
      end
      assert.equals("# HELP sync_seconds Syncs.\n" ..
        "# TYPE sync_seconds histogram\n" ..
        'sync_seconds_bucket{le="0.001"} 2\n' ..
        'sync_seconds_bucket{le="0.01"} 3\n' ..
        'sync_seconds_bucket{le="1"} 4\n' ..
        'sync_seconds_bucket{le="+Inf"} 5\n' ..
        "sync_seconds_sum 5.5065\n" ..
        "sync_seconds_count 5\n", registry:render())
    end)

    it("counts a value equal to a bound in that bound's bucket", function()
      local latency = registry:histogram("h", "H.", { 1, 2 })
      latency:observe(1)
      latency:observe(2)
      assert.same({ 1, 2, 2 }, latency:snapshot().counts)
    end)

    it("uses the latency buckets by default, 0.5 ms to 10 s", function()
      registry:histogram("h", "H.")
      local les = {}
      for _, sample in ipairs(metrics.parse(registry:render()).h_bucket) do
        les[#les + 1] = sample.labels.le
      end
      assert.same({ "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.02", "0.05", "0.1", "0.25", "0.5",
        "1", "2.5", "5", "10", "+Inf" }, les)
    end)

    it("keeps every bucket cumulative and +Inf equal to the count", function()
      local latency = registry:histogram("h", "H.")
      for i = 1, 1000 do
        latency:observe((i * 7919 % 1000) ^ 2 * 1e-5) -- 0 .. ~10 s, out of order
      end
      local buckets = metrics.parse(registry:render()).h_bucket
      for i = 2, #buckets do
        assert.is_true(buckets[i].value >= buckets[i - 1].value)
      end
      assert.equals(1000, buckets[#buckets].value)
      assert.equals(1000, metrics.parse(registry:render()).h_count[1].value)
    end)

    it("gives a snapshot of its cumulative counts", function()
      local latency = registry:histogram("h", "H.", { 0.1, 1 }, { "kind" })
      latency:observe(0.05, { kind = "Service" })
      latency:observe(0.5, { kind = "Service" })
      assert.same({ bounds = { 0.1, 1, math.huge }, counts = { 1, 2, 2 }, sum = 0.55, count = 2 },
        latency:snapshot({ kind = "Service" }))
      assert.same({ bounds = { 0.1, 1, math.huge }, counts = { 0, 0, 0 }, sum = 0, count = 0 },
        latency:snapshot({ kind = "Node" }))
      assert.not_matches("Node", registry:render()) -- a snapshot creates no series
    end)

    it("puts le after the declared labels", function()
      registry:histogram("h", "H.", { 1 }, { "kind" }):observe(0.5, { kind = "Node" })
      assert.equals("# HELP h H.\n" ..
        "# TYPE h histogram\n" ..
        'h_bucket{kind="Node",le="1"} 1\n' ..
        'h_bucket{kind="Node",le="+Inf"} 1\n' ..
        'h_sum{kind="Node"} 0.5\n' ..
        'h_count{kind="Node"} 1\n', registry:render())
    end)

    it("refuses buckets that do not increase, and a label named le", function()
      assert.has_error(function() registry:histogram("h", "H.", { 1, 1 }) end,
        "histogram h: buckets must be increasing numbers")
      assert.has_error(function() registry:histogram("h", "H.", { 1 }, { "le" }) end,
        "metric h: label name le is not allowed")
    end)
  end)

  describe("the text", function()
    it("escapes backslash, double quote and newline in label values", function()
      registry:gauge("g", "G.", { "path" }):set(1, { path = 'a\\b "c"\nd' })
      assert.matches('\ng{path="a\\\\b \\"c\\"\\nd"} 1\n', registry:render(), 1, true)
      assert.equals('a\\b "c"\nd', metrics.parse(registry:render()).g[1].labels.path)
    end)

    it("escapes backslash and newline in help", function()
      registry:counter("c_total", 'one \\ "two"\nthree')
      assert.matches('# HELP c_total one \\\\ "two"\\nthree\n', registry:render(), 1, true)
    end)

    it("lists families in registration order, label sets sorted, label names sorted", function()
      local zeta = registry:gauge("zeta", "Z.", { "b", "a" })
      registry:gauge("alpha", "A.")
      zeta:set(1, { b = "2", a = "y" })
      zeta:set(2, { b = "1", a = "x" })
      zeta:set(3, { b = "0", a = "y" })
      assert.equals("# HELP zeta Z.\n" ..
        "# TYPE zeta gauge\n" ..
        'zeta{a="x",b="1"} 2\n' ..
        'zeta{a="y",b="0"} 3\n' ..
        'zeta{a="y",b="2"} 1\n' ..
        "# HELP alpha A.\n" ..
        "# TYPE alpha gauge\n" ..
        "alpha 0\n", registry:render())
    end)

    it("is the same text for the same values, whatever order they came in", function()
      local first, second = metrics.new(), metrics.new()
      for _, r in ipairs({ first, second }) do
        r:counter("c_total", "C.", { "kind" })
      end
      for _, kind in ipairs({ "Service", "Node", "Pod" }) do
        first.by_name.c_total:inc(1, { kind = kind })
      end
      for _, kind in ipairs({ "Pod", "Service", "Node" }) do
        second.by_name.c_total:inc(1, { kind = kind })
      end
      assert.equals(first:render(), second:render())
    end)

    it("refuses a name registered twice and names Prometheus cannot read", function()
      registry:counter("c_total", "C.")
      assert.has_error(function() registry:gauge("c_total", "C.") end, "metric c_total is registered already")
      assert.has_error(function() registry:gauge("1c", "C.") end,
        "metric name 1c: must match [a-zA-Z_:][a-zA-Z0-9_:]*")
      assert.has_error(function() registry:gauge("g", "G.", { "__reserved" }) end,
        "metric g: label name __reserved is not allowed")
    end)
  end)

  describe("a collector", function()
    it("is read at every render, its label sets sorted", function()
      local services = 1
      registry:collect("balancing_objects", "Objects in the store.", "gauge", function()
        return { { { kind = "Service" }, services }, { { kind = "EndpointSlice" }, 4 } }
      end)
      registry:collect("balancing_frontends", "Frontends programmed.", "gauge", function()
        return { { nil, 9 } }
      end)
      services = 2
      assert.equals("# HELP balancing_objects Objects in the store.\n" ..
        "# TYPE balancing_objects gauge\n" ..
        'balancing_objects{kind="EndpointSlice"} 4\n' ..
        'balancing_objects{kind="Service"} 2\n' ..
        "# HELP balancing_frontends Frontends programmed.\n" ..
        "# TYPE balancing_frontends gauge\n" ..
        "balancing_frontends 9\n", registry:render())
      services = 5
      assert.equals(5, metrics.parse(registry:render()).balancing_objects[2].value)
    end)

    it("that fails is left out and named, and the rest is rendered", function()
      registry:collect("broken", "Broken.", "gauge", function() error("store gone", 0) end)
      registry:collect("odd", "Odd.", "counter", function() return { { {}, "many" } } end)
      registry:counter("c_total", "C.")
      local text, errors = registry:render()
      assert.equals("# HELP c_total C.\n# TYPE c_total counter\nc_total 0\n", text)
      assert.same({ "collector broken: store gone", "collector odd: sample 1: not { labels, number }" }, errors)
    end)

    it("is a counter, a gauge or untyped", function()
      assert.has_error(function() registry:collect("h", "H.", "histogram", function() return {} end) end,
        "collector h: type must be counter, gauge or untyped")
    end)
  end)

  it("renders one value when every collector answered", function()
    registry:counter("c_total", "C.")
    assert.equals(1, select("#", registry:render()))
  end)

  it("build_info is one gauge at 1 whose labels say what runs", function()
    metrics.build_info(registry, { version = "0.1.0", abi = 3, luajit = "LuaJIT 2.1.0-beta3" })
    assert.equals("# HELP balancing_build_info The running agent's build, in its labels (the value is always 1).\n" ..
      "# TYPE balancing_build_info gauge\n" ..
      'balancing_build_info{abi="3",luajit="LuaJIT 2.1.0-beta3",version="0.1.0"} 1\n', registry:render())
  end)

  describe("parse", function()
    it("reads back every sample render wrote", function()
      local samples = assert(metrics.parse(full_registry():render()))
      assert.same({ { labels = {}, value = 3 } }, samples.balancing_syncs_total)
      assert.same({ { labels = { kind = "Node" }, value = 2 }, { labels = { kind = "Service" }, value = 1 } },
        samples.balancing_watch_restarts_total)
      assert.equals(15, #samples.balancing_sync_latency_seconds_bucket)
      assert.same({ labels = { le = "+Inf" }, value = 5 }, samples.balancing_sync_latency_seconds_bucket[15])
      assert.same({ { labels = {}, value = 0.0002 + 0.003 + 0.003 + 0.7 + 42 } },
        samples.balancing_sync_latency_seconds_sum)
      assert.same({ { labels = { path = 'C:\\dir "quoted"\nnext' }, value = -1.25 } }, samples.balancing_weird)
      assert.same({ { labels = { owner = "service/default/web", le = "0.1" }, value = 1 } },
        { samples.balancing_apply_duration_seconds_bucket[2] })
    end)

    it("skips comments, ignores timestamps, reads +Inf, -Inf and NaN", function()
      local samples = assert(metrics.parse("# a comment\n\na 1 1700000000000\nb{x=\"1\",} +Inf\nc -Inf\nd NaN"))
      assert.same({ { labels = {}, value = 1 } }, samples.a)
      assert.same({ { labels = { x = "1" }, value = math.huge } }, samples.b)
      assert.equals(-math.huge, samples.c[1].value)
      assert.is_true(samples.d[1].value ~= samples.d[1].value)
    end)

    it("names the line that is not a sample", function()
      assert.same({ nil, "line 2: a value expected after b" }, { metrics.parse("a 1\nb\n") })
      assert.same({ nil, "line 1: label x: unterminated value" }, { metrics.parse('a{x="1} 2\n') })
    end)
  end)

  it("is read by prometheus_client's parser as it reads it back itself", function()
    local text = full_registry():render()
    local ours = assert(metrics.parse(text))
    local families = prometheus_client_families(text)
    local kinds, seen = {}, {}
    for _, family in ipairs(families) do
      kinds[#kinds + 1] = family.name .. " " .. family.type
      for _, sample in ipairs(family.samples) do
        local name, labels, value = sample[1], sample[2], tonumber(sample[3])
        seen[name] = (seen[name] or 0) + 1
        local mine = ours[name][seen[name]]
        assert.same(mine.labels, labels)
        assert.equals(mine.value, value)
      end
    end
    -- prometheus_client names a counter's family without _total
    assert.same({ "balancing_syncs counter", "balancing_watch_restarts counter",
      "balancing_sync_latency_seconds histogram", "balancing_apply_duration_seconds histogram",
      "balancing_weird gauge", "balancing_objects gauge", "balancing_build_info gauge" }, kinds)
    assert.equals('Help with a \\ backslash,\na newline and a " quote.', families[5].help)
    for name, list in pairs(ours) do
      assert.equals(#list, seen[name], name)
    end
  end)

  it("allocates nothing on inc and observe once a label set is known", function()
    local syncs = registry:counter("syncs_total", "Syncs.")
    local restarts = registry:counter("restarts_total", "Restarts.", { "kind" })
    local latency = registry:histogram("latency_seconds", "Latency.", nil, { "kind" })
    local labels = { kind = "Service" }
    restarts:inc(1, labels)
    latency:observe(0.001, labels)
    collectgarbage()
    collectgarbage("stop")
    local before = collectgarbage("count")
    for i = 1, 100000 do
      syncs:inc()
      restarts:inc(1, labels)
      latency:observe(i * 1e-5, labels)
    end
    local kilobytes = collectgarbage("count") - before
    collectgarbage("restart")
    -- the JIT's own traces aside: far less than a byte a call
    assert.is_true(kilobytes < 64, kilobytes .. " KiB")
  end)
end)
