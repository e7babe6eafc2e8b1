-- The agent's Prometheus metrics: a registry of counters, gauges and
-- histograms, and scrape-time collectors, rendered as the text exposition
-- format 0.0.4 that /metrics serves.
--
--   local registry = metrics.new()
--   local syncs = registry:counter("balancing_syncs_total", "Source syncs.")
--   local restarts = registry:counter("balancing_watch_restarts_total", "Watches restarted.", { "kind" })
--   local latency = registry:histogram("balancing_sync_latency_seconds", "Change to kernel.")
--   syncs:inc()                                  -- by 1; restarts:inc(1, { kind = "Service" })
--   latency:observe(0.003)
--   registry:collect("balancing_objects", "Objects in the store.", "gauge",
--     function() return { { { kind = "Service" }, store:count("Service") } } end)
--   metrics.build_info(registry, { version = "0.1.0", abi = core.ABI_VERSION, luajit = jit.version })
--   local text, errors = registry:render()      -- errors: collectors that failed (left out)
--   local samples = metrics.parse(text)          -- for specs: { [sample name] = { { labels =, value = } } }
--
-- A metric declares its label names when it is registered, as client
-- libraries' "vectors" do: one without names has exactly one series, shown
-- from the start (0 before the first inc, as the agent's counters always
-- were); one with names shows a series per label set once that set is used
-- (inc(0, labels) shows it at 0). A label set's names are checked when the
-- set is first seen, not on every call.
--
-- inc, set and observe run once per sync or apply: they build no strings.
-- Without labels they touch the one series; with labels they find the series
-- through one table per declared name (values in declaration order), and
-- only a label set's first use builds its text.
--
-- Output is byte-stable for specs: families in registration order, label
-- names sorted within a set, label sets sorted by their text, `le` last.
local M = {}

-- Latency buckets in seconds for syncs, reconciles and applies: a small
-- apply takes ~100 µs, a full resync of a large cluster seconds.
M.LATENCY_BUCKETS = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }

-- A collector gives plain samples: no buckets.
local COLLECTOR_TYPES = { counter = true, gauge = true, untyped = true }

local function check_metric_name(name)
  if type(name) ~= "string" or not name:match("^[%a_:][%w_:]*$") then
    error("metric name " .. tostring(name) .. ": must match [a-zA-Z_:][a-zA-Z0-9_:]*", 3)
  end
end

local function valid_label_name(name)
  -- names starting with __ are reserved for Prometheus itself
  return type(name) == "string" and name:match("^[%a_][%w_]*$") ~= nil and name:sub(1, 2) ~= "__"
end

-- Sample values as Prometheus reads them: integers without a fraction, other
-- numbers in the shortest form that reads back to the same double.
local function format_value(value)
  if value ~= value then
    return "NaN"
  elseif value == math.huge then
    return "+Inf"
  elseif value == -math.huge then
    return "-Inf"
  elseif value == math.floor(value) and math.abs(value) < 2 ^ 53 then
    return string.format("%d", value)
  end
  for _, format in ipairs({ "%.15g", "%.16g" }) do
    local short = string.format(format, value)
    if tonumber(short) == value then
      return short
    end
  end
  return string.format("%.17g", value)
end

-- The text format's escapes: label values escape \, " and newline; HELP text
-- escapes \ and newline only.
local LABEL_ESCAPES = { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }

local function escape_label_value(value)
  return (tostring(value):gsub('[\\"\n]', LABEL_ESCAPES))
end

local function escape_help(text)
  return (tostring(text):gsub("[\\\n]", LABEL_ESCAPES))
end

-- `a="x",b="y"` (names sorted), without braces so that a histogram can add
-- `le`. nil when the set is not valid.
local function label_text(labels)
  local names = {}
  for name in pairs(labels) do
    if not valid_label_name(name) then
      return nil, "label name " .. tostring(name) .. ": must match [a-zA-Z_][a-zA-Z0-9_]*, not __*"
    end
    names[#names + 1] = name
  end
  table.sort(names)
  local parts = {}
  for i, name in ipairs(names) do
    parts[i] = name .. '="' .. escape_label_value(labels[name]) .. '"'
  end
  return table.concat(parts, ",")
end

local function braces(inner)
  return inner == "" and "" or "{" .. inner .. "}"
end

local Registry = {}
Registry.__index = Registry

local Counter = {}
Counter.__index = Counter
local Gauge = {}
Gauge.__index = Gauge
local Histogram = {}
Histogram.__index = Histogram

function M.new()
  return setmetatable({ families = {}, by_name = {} }, Registry)
end

-- A series: value (counter, gauge) or counts per bucket, sum and count
-- (histogram); `text` is its label text.
local function new_series(metric, text)
  if metric.bounds then
    local counts = {}
    for i = 1, #metric.bounds + 1 do
      counts[i] = 0
    end
    return { text = text, counts = counts, sum = 0, count = 0 }
  end
  return { text = text, value = 0 }
end

local function add_family(self, family)
  check_metric_name(family.name)
  if self.by_name[family.name] then
    error("metric " .. family.name .. " is registered already", 3)
  end
  if type(family.help) ~= "string" then
    error("metric " .. family.name .. ": help text missing", 3)
  end
  family.help_line = "# HELP " .. family.name .. " " .. escape_help(family.help)
  family.type_line = "# TYPE " .. family.name .. " " .. family.kind
  self.by_name[family.name] = family
  self.families[#self.families + 1] = family
  return family
end

local function check_label_names(metric_name, label_names, reserved)
  local names = {}
  for i, name in ipairs(label_names or {}) do
    if not valid_label_name(name) or name == reserved then
      error("metric " .. metric_name .. ": label name " .. tostring(name) .. " is not allowed", 4)
    end
    names[i] = name
  end
  return names
end

local function register(self, class, kind, name, help, label_names, bounds)
  check_metric_name(name)
  local metric = setmetatable({
    name = name, help = help, kind = kind, bounds = bounds,
    label_names = check_label_names(name, label_names, bounds and "le"),
    index = {},   -- value of the 1st declared label → ... → series
    by_text = {}, -- label text → series: 1 and "1" are one series
    series = {},  -- every series, sorted by text when rendered
  }, class)
  if #metric.label_names == 0 then
    metric.index = nil -- labels given to it go to create_series, which refuses them
    metric.unlabelled = new_series(metric, "")
    metric.series[1] = metric.unlabelled
  end
  return add_family(self, metric)
end

-- registry:counter(name, help, label_names?) → counter
function Registry:counter(name, help, label_names)
  return register(self, Counter, "counter", name, help, label_names)
end

-- registry:gauge(name, help, label_names?) → gauge
function Registry:gauge(name, help, label_names)
  return register(self, Gauge, "gauge", name, help, label_names)
end

-- registry:histogram(name, help, buckets?, label_names?) → histogram; buckets
-- are the upper bounds, increasing, +Inf implied (LATENCY_BUCKETS by default).
function Registry:histogram(name, help, buckets, label_names)
  local bounds = {}
  for i, bound in ipairs(buckets or M.LATENCY_BUCKETS) do
    if type(bound) ~= "number" or bound ~= bound or (i > 1 and bound <= bounds[i - 1]) then
      error("histogram " .. tostring(name) .. ": buckets must be increasing numbers", 2)
    end
    if bound ~= math.huge then -- +Inf is always the last bucket
      bounds[#bounds + 1] = bound
    end
  end
  local histogram = register(self, Histogram, "histogram", name, help, label_names, bounds)
  histogram.le = {}
  for i, bound in ipairs(bounds) do
    histogram.le[i] = format_value(bound)
  end
  histogram.le[#bounds + 1] = "+Inf"
  return histogram
end

-- registry:collect(name, help, type, collect) with collect() →
-- { { labels or nil, value }, ... }, called at every render: for values the
-- agent reads at scrape time (objects in the store, frontends programmed).
function Registry:collect(name, help, kind, collect)
  if not COLLECTOR_TYPES[kind] then
    error("collector " .. tostring(name) .. ": type must be counter, gauge or untyped", 2)
  end
  if type(collect) ~= "function" then
    error("collector " .. tostring(name) .. ": a function is needed", 2)
  end
  check_metric_name(name)
  return add_family(self, { name = name, help = help, kind = kind, collect = collect })
end

-- The series of a label set, created (and its names checked) on first use.
local function create_series(metric, labels)
  local names = metric.label_names
  if #names == 0 then
    error("metric " .. metric.name .. " declares no labels: call it without", 3)
  end
  local declared = {}
  for _, name in ipairs(names) do
    declared[name] = true
    if labels[name] == nil then
      error("metric " .. metric.name .. ": label " .. name .. " missing", 3)
    end
  end
  for name in pairs(labels) do
    if not declared[name] then
      error("metric " .. metric.name .. ": label " .. tostring(name) .. " is not declared", 3)
    end
  end
  local text = assert(label_text(labels))
  local series = metric.by_text[text]
  if not series then
    series = new_series(metric, text)
    metric.by_text[text] = series
    metric.series[#metric.series + 1] = series
    metric.unsorted = true
  end
  local node = metric.index
  for i = 1, #names - 1 do
    local value = labels[names[i]]
    local child = node[value]
    if not child then
      child = {}
      node[value] = child
    end
    node = child
  end
  node[labels[names[#names]]] = series
  return series
end

local function find_series(metric, labels)
  if not labels then
    return metric.unlabelled or error("metric " .. metric.name .. " needs labels " ..
      table.concat(metric.label_names, ", "), 3)
  end
  local node = metric.index
  if not node then
    return create_series(metric, labels)
  end
  local names = metric.label_names
  for i = 1, #names do
    local value = labels[names[i]]
    node = value ~= nil and node[value]
    if not node then
      return create_series(metric, labels)
    end
  end
  return node
end

-- counter:inc(n?, labels?): n defaults to 1; a counter never goes down.
function Counter:inc(n, labels)
  n = n or 1
  if n < 0 then
    error("counter " .. self.name .. ": inc by " .. n .. ", counters only go up", 2)
  end
  local series = find_series(self, labels)
  series.value = series.value + n
end

-- The series of a label set if it exists, without creating it.
local function existing_series(metric, labels)
  if not labels then
    return metric.unlabelled
  end
  local text = label_text(labels)
  return text and metric.by_text[text]
end

-- counter:get(labels?) → its value (0 for a label set never used)
function Counter:get(labels)
  local series = existing_series(self, labels)
  return series and series.value or 0
end

-- gauge:set(value, labels?)
function Gauge:set(value, labels)
  find_series(self, labels).value = value
end

function Gauge:get(labels)
  local series = existing_series(self, labels)
  return series and series.value or 0
end

-- histogram:observe(value, labels?): one bucket's count, the sum and the
-- count; buckets are made cumulative when rendered.
function Histogram:observe(value, labels)
  local series = find_series(self, labels)
  local bounds = self.bounds
  local i, last = 1, #bounds
  while i <= last and value > bounds[i] do
    i = i + 1
  end
  local counts = series.counts
  counts[i] = counts[i] + 1
  series.sum = series.sum + value
  series.count = series.count + 1
end

-- histogram:snapshot(labels?) → { bounds = { ..., math.huge }, counts =
-- { cumulative, as rendered }, sum =, count = } (for benchmarks).
function Histogram:snapshot(labels)
  local series = existing_series(self, labels) or new_series(self, "")
  local bounds, counts, total = {}, {}, 0
  for i = 1, #self.bounds + 1 do
    bounds[i] = self.bounds[i] or math.huge
    total = total + series.counts[i]
    counts[i] = total
  end
  return { bounds = bounds, counts = counts, sum = series.sum, count = series.count }
end

local function by_text(a, b)
  return a.text < b.text
end

local function render_histogram(metric, lines)
  local name = metric.name
  for _, series in ipairs(metric.series) do
    local prefix = name .. "_bucket{" .. (series.text == "" and "" or series.text .. ",") .. 'le="'
    local total = 0
    for i, le in ipairs(metric.le) do
      total = total + series.counts[i]
      lines[#lines + 1] = prefix .. le .. '"} ' .. total
    end
    local labels = braces(series.text)
    lines[#lines + 1] = name .. "_sum" .. labels .. " " .. format_value(series.sum)
    lines[#lines + 1] = name .. "_count" .. labels .. " " .. series.count
  end
end

-- A collector's samples as series, or nil, err when it failed or returned
-- something that is not a list of { labels, number }.
local function collected_series(family)
  local ok, samples = pcall(family.collect)
  if not ok then
    return nil, tostring(samples)
  end
  if type(samples) ~= "table" then
    return nil, "returned " .. type(samples) .. ", not a list"
  end
  local list = {}
  for i, sample in ipairs(samples) do
    local labels, value = sample[1] or {}, sample[2]
    if type(labels) ~= "table" or type(value) ~= "number" then
      return nil, "sample " .. i .. ": not { labels, number }"
    end
    local text, err = label_text(labels)
    if not text then
      return nil, "sample " .. i .. ": " .. err
    end
    list[i] = { text = text, value = value }
  end
  table.sort(list, by_text)
  return list
end

-- registry:render() → text, errors: every family in registration order; a
-- collector that fails is left out and named in errors (nil when none did),
-- so that one broken collector never costs the whole scrape.
function Registry:render()
  local lines, errors = {}, nil
  for _, family in ipairs(self.families) do
    local series = family.series
    if family.collect then
      local err
      series, err = collected_series(family)
      if not series then
        errors = errors or {}
        errors[#errors + 1] = "collector " .. family.name .. ": " .. err
      end
    elseif family.unsorted then
      table.sort(series, by_text)
      family.unsorted = false
    end
    if series then
      lines[#lines + 1] = family.help_line
      lines[#lines + 1] = family.type_line
      if family.bounds then
        render_histogram(family, lines)
      else
        for _, one in ipairs(series) do
          lines[#lines + 1] = family.name .. braces(one.text) .. " " .. format_value(one.value)
        end
      end
    end
  end
  lines[#lines + 1] = ""
  if errors then
    return table.concat(lines, "\n"), errors
  end
  return (table.concat(lines, "\n")) -- one value: io.write(registry:render()) works
end

-- metrics.build_info(registry, { version =, abi =, luajit = }) registers
-- balancing_build_info: one series at 1 whose labels say what is running.
function M.build_info(registry, facts)
  local names = {}
  for name in pairs(facts) do
    names[#names + 1] = name
  end
  table.sort(names)
  local gauge = registry:gauge("balancing_build_info",
    "The running agent's build, in its labels (the value is always 1).", names)
  gauge:set(1, facts)
  return gauge
end

-- Parsing, for specs and benchmarks that read /metrics.

local UNESCAPES = { ["\\"] = "\\", ['"'] = '"', n = "\n" }

local function parse_value(text)
  if text == "+Inf" or text == "Inf" then
    return math.huge
  elseif text == "-Inf" then
    return -math.huge
  elseif text == "NaN" then
    return 0 / 0
  end
  return tonumber(text)
end

-- `{a="x",b="y"}` from position `at` (just past the name) → labels, the
-- position after `}`; nil, err when malformed.
local function parse_labels(line, at)
  local labels = {}
  at = at + 1 -- past "{"
  while true do
    at = line:match("^%s*()", at)
    if line:sub(at, at) == "}" then
      return labels, at + 1
    end
    local name, after = line:match('^([%a_][%w_]*)%s*=%s*"()', at)
    if not name then
      return nil, "a label name and =\" expected at column " .. at
    end
    local parts = {}
    at = after
    while true do
      local char = line:sub(at, at)
      if char == "" then
        return nil, "label " .. name .. ": unterminated value"
      elseif char == '"' then
        break
      elseif char == "\\" then
        local escaped = UNESCAPES[line:sub(at + 1, at + 1)]
        if not escaped then
          return nil, "label " .. name .. ": bad escape at column " .. at
        end
        parts[#parts + 1] = escaped
        at = at + 2
      else
        local run_end = line:find('[\\"]', at) or #line + 1
        parts[#parts + 1] = line:sub(at, run_end - 1)
        at = run_end
      end
    end
    labels[name] = table.concat(parts)
    at = line:match("^%s*,?()", at + 1)
  end
end

-- metrics.parse(text) → { [sample name] = { { labels = {...}, value = n }, ... } }
-- in the order of the text (histograms give name_bucket, name_sum and
-- name_count); nil, "line N: ..." when a sample line is malformed. Comments
-- and HELP/TYPE lines are skipped; timestamps are ignored.
function M.parse(text)
  local samples = {}
  local number = 0
  for line in (text .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("([^\n]*)\n") do
    number = number + 1
    if not line:match("^%s*#") and not line:match("^%s*$") then
      local name, at = line:match("^%s*([%a_:][%w_:]*)()")
      if not name then
        return nil, "line " .. number .. ": a metric name expected"
      end
      local labels = {}
      if line:sub(at, at) == "{" then
        labels, at = parse_labels(line, at)
        if not labels then
          return nil, "line " .. number .. ": " .. at
        end
      end
      local value_text = line:match("^%s+(%S+)%s*%-?%d*%s*$", at)
      local value = value_text and parse_value(value_text)
      if not value then
        return nil, "line " .. number .. ": a value expected after " .. name
      end
      samples[name] = samples[name] or {}
      table.insert(samples[name], { labels = labels, value = value })
    end
  end
  return samples
end

return M
