-- Helper of scripts/bench/connect: the table of medians and ratios.
--
--   luajit connect_report.lua RESULTS
--
-- RESULTS has one line per run: "variant size target round ns_per_connect"
-- (size and target are "-" for the direct variants). Prints a Markdown table:
-- the median of every variant per target (first, middle, last frontend) and
-- over all its runs, and the ratios of those medians to the median of
-- "direct" (all its runs). "paired" is the median, over every (round,
-- target) slot, of the run's figure divided by the direct run of the same
-- slot: runs seconds apart share the machine's background load, so this
-- ratio is the least disturbed by other work on the machine. "same-netns
-- paired" is that ratio against the baseline in the same kind of network
-- namespace: "direct" for the hook (the host's), "direct-netns" for the
-- kube-proxy variants (each in a fresh namespace of its own). Below the
-- table, the cost of the per-owner translation counters and of events: per
-- size, the median over the slots of "hook" divided by "hook-uncounted", and
-- by "hook-events-off", of the same slot.

local path = assert(arg[1], "usage: connect_report.lua RESULTS")

local samples = {} -- key "variant size" -> { all = {...}, first = {...}, ... }
local order = {}
local direct_slot = {} -- "round target" -> ns of direct
local netns_slot = {} -- "round target" -> ns of direct-netns
local lines = {}
for line in io.lines(path) do
  local variant, size, target, round, ns = line:match("^(%S+) (%S+) (%S+) (%S+) (%d+)$")
  if variant then
    lines[#lines + 1] = { variant = variant, size = size, slot = round .. " " .. target, ns = tonumber(ns) }
    if variant == "direct" then
      direct_slot[round .. " " .. target] = tonumber(ns)
    elseif variant == "direct-netns" then
      netns_slot[round .. " " .. target] = tonumber(ns)
    end
  end
end
for _, run in ipairs(lines) do
  local variant, size, target, ns = run.variant, run.size, run.slot:match(" (%S+)$"), run.ns
  do
    local key = variant .. " " .. size
    if not samples[key] then
      samples[key] = { variant = variant, size = size, all = {} }
      order[#order + 1] = key
    end
    local entry = samples[key]
    entry[target] = entry[target] or {}
    table.insert(entry[target], ns)
    table.insert(entry.all, ns)
    entry.paired = entry.paired or {}
    entry.same = entry.same or {}
    if direct_slot[run.slot] then
      table.insert(entry.paired, ns / direct_slot[run.slot])
    end
    local own = (variant == "iptables" or variant == "nftables" or variant == "direct-netns")
      and netns_slot[run.slot] or direct_slot[run.slot]
    if own then
      table.insert(entry.same, ns / own)
    end
  end
end

local function median(list)
  if not list or #list == 0 then
    return nil
  end
  local sorted = {}
  for i, v in ipairs(list) do
    sorted[i] = v
  end
  table.sort(sorted)
  local n = #sorted
  if n % 2 == 1 then
    return sorted[(n + 1) / 2]
  end
  return (sorted[n / 2] + sorted[n / 2 + 1]) / 2
end

local rank = { direct = 1, ["direct-netns"] = 2, hook = 3, ["hook-events-off"] = 4, ["hook-uncounted"] = 5,
  iptables = 6, nftables = 7 }
table.sort(order, function(a, b)
  local ea, eb = samples[a], samples[b]
  if ea.variant ~= eb.variant then
    return (rank[ea.variant] or 9) < (rank[eb.variant] or 9)
  end
  return (tonumber(ea.size) or 0) < (tonumber(eb.size) or 0)
end)

local base = samples["direct -"] and median(samples["direct -"].all)

local function fmt(ns)
  return ns and string.format("%d", math.floor(ns + 0.5)) or "–"
end

local function ratio(ns)
  if not ns or not base then
    return "–"
  end
  return string.format("%.2f", ns / base)
end

local names = {
  direct = "direct (no hook)",
  ["direct-netns"] = "direct, in a fresh netns",
  hook = "Balancing hook (events all)",
  ["hook-events-off"] = "Balancing hook, events off",
  ["hook-uncounted"] = "Balancing hook, no counters",
  iptables = "kube-proxy iptables",
  nftables = "kube-proxy nftables",
}

print("| variant | frontends | runs | first ns | middle ns | last ns | all ns"
  .. " | ×direct first | ×direct middle | ×direct last | ×direct all | ×direct paired | ×same-netns paired |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for _, key in ipairs(order) do
  local e = samples[key]
  local direct_like = e.size == "-"
  local first, middle, last = median(e.first), median(e.middle), median(e.last)
  local all = median(e.all)
  local paired, same = median(e.paired), median(e.same)
  print(string.format("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |",
    names[e.variant] or e.variant, direct_like and "–" or e.size, #e.all,
    direct_like and "–" or fmt(first), direct_like and "–" or fmt(middle), direct_like and "–" or fmt(last),
    fmt(all),
    direct_like and "–" or ratio(first), direct_like and "–" or ratio(middle), direct_like and "–" or ratio(last),
    ratio(all), paired and string.format("%.2f", paired) or "–", same and string.format("%.2f", same) or "–"))
end

-- hook against a baseline variant, slot by slot, per size
local function paired_against(baseline, what)
  local baseline_slot = {} -- "size round target" -> ns
  for _, run in ipairs(lines) do
    if run.variant == baseline then
      baseline_slot[run.size .. " " .. run.slot] = run.ns
    end
  end
  local ratios, sizes = {}, {}
  for _, run in ipairs(lines) do
    local other = run.variant == "hook" and baseline_slot[run.size .. " " .. run.slot]
    if other then
      if not ratios[run.size] then
        ratios[run.size] = {}
        sizes[#sizes + 1] = run.size
      end
      table.insert(ratios[run.size], run.ns / other)
    end
  end
  table.sort(sizes, function(a, b) return tonumber(a) < tonumber(b) end)
  for _, size in ipairs(sizes) do
    print(string.format("\n%s, %s frontends: hook / %s, paired median %.3f over %d slots", what, size, baseline,
      median(ratios[size]), #ratios[size]))
  end
end
paired_against("hook-uncounted", "per-owner counters")
paired_against("hook-events-off", "events all against off")
