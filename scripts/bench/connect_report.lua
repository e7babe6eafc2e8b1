-- Helper of scripts/bench/connect: the table of medians and ratios.
--
--   luajit connect_report.lua RESULTS
--
-- RESULTS has one line per run: "variant size target round ns_per_connect"
-- (size and target are "-" for the direct variants). Prints a Markdown table:
-- the median of every variant per target (first, middle, last frontend) and
-- over all its runs, and the ratios of those medians to the median of
-- "direct" (all its runs).

local path = assert(arg[1], "usage: connect_report.lua RESULTS")

local samples = {} -- key "variant size" -> { all = {...}, first = {...}, ... }
local order = {}
for line in io.lines(path) do
  local variant, size, target, _, ns = line:match("^(%S+) (%S+) (%S+) (%S+) (%d+)$")
  if variant then
    local key = variant .. " " .. size
    if not samples[key] then
      samples[key] = { variant = variant, size = size, all = {} }
      order[#order + 1] = key
    end
    local entry = samples[key]
    entry[target] = entry[target] or {}
    table.insert(entry[target], tonumber(ns))
    table.insert(entry.all, tonumber(ns))
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

local rank = { direct = 1, ["direct-netns"] = 2, hook = 3, iptables = 4, nftables = 5 }
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
  hook = "Balancing hook",
  iptables = "kube-proxy iptables",
  nftables = "kube-proxy nftables",
}

print("| variant | frontends | runs | first ns | middle ns | last ns | all ns"
  .. " | ×direct first | ×direct middle | ×direct last | ×direct all |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for _, key in ipairs(order) do
  local e = samples[key]
  local direct_like = e.size == "-"
  local first, middle, last = median(e.first), median(e.middle), median(e.last)
  local all = median(e.all)
  print(string.format("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |",
    names[e.variant] or e.variant, direct_like and "–" or e.size, #e.all,
    direct_like and "–" or fmt(first), direct_like and "–" or fmt(middle), direct_like and "–" or fmt(last),
    fmt(all),
    direct_like and "–" or ratio(first), direct_like and "–" or ratio(middle), direct_like and "–" or ratio(last),
    ratio(all)))
end
