-- Helper of scripts/bench/redirect_loop: runs the rounds and prints the report.
--
--   luajit redirect_loop_run.lua PLAN BENCH ROUNDS CONNECTS WARMUP MAX_SECONDS [RAW]
--
-- PLAN has one line per client spot:
--   run TREE DEPTH VARIANT CGROUP ADDRESS COUNTER PROG_ID
--   check TREE CGROUP ADDRESS COUNTER PROG_ID   (the backend pod: must reach the Service)
-- TREE is "stock" or "patched" (a datapath and cgroup tree each), VARIANT "lr"
-- (dials the LocalRedirect VIP) or "svc" (dials the plain Service VIP).
--
-- bpf_stats: run time accounting is switched on with a BPF_ENABLE_STATS file
-- descriptor held by this process (bpf_stats.lua, shared with
-- scripts/bench/connect; the kernel switches it off again when the last such
-- fd closes, so it ends with this process whatever happens), never with the
-- global kernel.bpf_stats_enabled sysctl. Around every client run
-- the connect4 program's run_time_ns and run_cnt are read (BPF_OBJ_GET_INFO_BY_FD):
-- only the run's own clients are in the run's cgroups, so the difference is
-- the run's, and run_cnt must grow by exactly the connects made.
--
-- Every round runs each spot once, in an order that rotates from round to
-- round. Figures are medians over the rounds; "paired" ones are medians of
-- per-round differences or ratios between two runs of the same round (the
-- runs seconds apart share the machine's background load).

local script_dir = (arg and arg[0] or "redirect_loop_run.lua"):match("^(.*)/[^/]*$") or "."
package.path = script_dir .. "/?.lua;" .. package.path
local bpf_stats = require("bpf_stats")

local function die(...)
  io.stderr:write("redirect_loop: ", ...)
  io.stderr:write("\n")
  os.exit(1)
end

local plan_path, bench = arg[1], arg[2]
local rounds, connects, warmup, max_seconds = tonumber(arg[3]), tonumber(arg[4]), tonumber(arg[5]), arg[6]
local raw_path = arg[7]
if not (plan_path and bench and rounds and connects and warmup and max_seconds) then
  die("usage: redirect_loop_run.lua PLAN BENCH ROUNDS CONNECTS WARMUP MAX_SECONDS [RAW]")
end

-- bpf_stats for as long as this process lives (closed after the rounds)
local stats, stats_err = bpf_stats.enable()
if not stats then
  die(stats_err)
end

local function prog_stats(id)
  local ok, t, c = pcall(bpf_stats.prog_stats, id, "balancing_conn")
  if not ok then
    die(t)
  end
  return t, c
end

local function quote(word)
  return "'" .. tostring(word):gsub("'", "'\\''") .. "'"
end

-- One client run in CGROUP: its output line, or dies.
local function client(cgroup, address, counter, n, w)
  local command = string.format("sh -c %s sh %s %s client -a %s -p 80 -n %d -w %d -t %s -c %s 2>&1",
    quote('echo $$ >"$1/cgroup.procs" && shift && exec "$@"'), quote(cgroup), quote(bench), address, n, w,
    max_seconds, quote(counter))
  local pipe = assert(io.popen(command, "r"))
  local out = pipe:read("*a")
  pipe:close()
  local ns, done = out:match("ns_per_connect=(%d+) connects=(%d+)")
  if not ns then
    die("client in ", cgroup, " to ", address, " failed: ", out)
  end
  return tonumber(ns), tonumber(done)
end

local spots, checks = {}, {}
for line in io.lines(plan_path) do
  local words = {}
  for word in line:gmatch("%S+") do
    words[#words + 1] = word
  end
  if words[1] == "run" then
    spots[#spots + 1] = { tree = words[2], depth = tonumber(words[3]), variant = words[4], cgroup = words[5],
      address = words[6], counter = words[7], prog = tonumber(words[8]) }
  elseif words[1] == "check" then
    checks[#checks + 1] = { tree = words[2], cgroup = words[3], address = words[4], counter = words[5],
      prog = tonumber(words[6]) }
  end
end

-- The backend pod reaches the Service, not the redirect: the walk really
-- finds a pair when there is one (COUNTER is the Service backend's).
for _, c in ipairs(checks) do
  client(c.cgroup, c.address, c.counter, 200, 0)
  io.stderr:write(string.format("[redirect_loop] %s: the backend pod's client reached the Service, not itself\n",
    c.tree))
end

local raw = raw_path and assert(io.open(raw_path, "w"))
local results = {} -- "tree depth variant" -> { [round] = { wall =, prog = } }
local mismatched = 0
for round = 1, rounds do
  local n = #spots
  for k = 0, n - 1 do
    -- rotate by round, and alternate direction, so no spot always follows the same one
    local i = (round % 2 == 1) and ((k + round - 1) % n + 1) or ((n - 1 - k + round - 1) % n + 1)
    local s = spots[i]
    local t0, c0 = prog_stats(s.prog)
    local wall, done = client(s.cgroup, s.address, s.counter, connects, warmup)
    local t1, c1 = prog_stats(s.prog)
    local runs = tonumber(c1 - c0)
    if runs ~= done + warmup then
      mismatched = mismatched + 1
    end
    local per_run = tonumber(t1 - t0) / runs
    local key = s.tree .. " " .. s.depth .. " " .. s.variant
    results[key] = results[key] or {}
    results[key][round] = { wall = wall, prog = per_run }
    if raw then
      raw:write(string.format("%s %d %s %d %d %.1f %d\n", s.tree, s.depth, s.variant, round, wall, per_run, runs))
    end
    io.stderr:write(string.format("[redirect_loop] round %d  %-7s depth %2d %-3s  %6d ns/connect"
      .. "  connect4 %6.0f ns/run\n", round, s.tree, s.depth, s.variant, wall, per_run))
  end
end
if raw then
  raw:close()
end
stats.close()

-- Report ---------------------------------------------------------------------

local function sorted(list)
  local copy = {}
  for i, v in ipairs(list) do
    copy[i] = v
  end
  table.sort(copy)
  return copy
end

local function quantile(list, q)
  local s = sorted(list)
  if #s == 0 then
    return nil
  end
  local pos = 1 + (#s - 1) * q
  local lo = math.floor(pos)
  local hi = math.min(lo + 1, #s)
  return s[lo] + (s[hi] - s[lo]) * (pos - lo)
end

local function median(list)
  return quantile(list, 0.5)
end

local function paired(a, b, field, op)
  local out = {}
  for round = 1, rounds do
    local x, y = a and a[round], b and b[round]
    if x and y then
      out[#out + 1] = op(x[field], y[field])
    end
  end
  return out
end
local function minus(x, y) return x - y end
local function over(x, y) return x / y end

local function column(runs, field)
  local out = {}
  for round = 1, rounds do
    if runs and runs[round] then
      out[#out + 1] = runs[round][field]
    end
  end
  return out
end

local trees, depths, seen_depth = {}, {}, {}
for _, s in ipairs(spots) do
  if not trees[s.tree] then
    trees[s.tree] = true
    trees[#trees + 1] = s.tree
  end
  if not seen_depth[s.depth] then
    seen_depth[s.depth] = true
    depths[#depths + 1] = s.depth
  end
end
table.sort(depths)

local function get(tree, depth, variant)
  return results[tree .. " " .. depth .. " " .. variant]
end

local function lookups(tree, depth)
  if tree == "patched" then
    -- redirect_loop_levels.patch: level 3 only (the benchmark's backend pod)
    return depth >= 3 and "1" or "0"
  end
  return tostring(math.min(depth, 16))
end

print(string.format("%d rounds; every run %d timed connects (at most %ss) after %d untimed; medians over the rounds,"
  .. " [interquartile range] of the per-round paired figures", rounds, connects, max_seconds, warmup))
if mismatched > 0 then
  print(string.format("WARNING: in %d runs connect4's run_cnt did not grow by exactly the connects made", mismatched))
end
for _, tree in ipairs(trees) do
  print()
  print("### " .. (tree == "stock" and "the datapath as built" or "the datapath with the patch (" .. tree .. ")"))
  print()
  print("| client depth | loop lookups | Service ns/connect | LocalRedirect ns/connect | LR / Service wall, paired"
    .. " | connect4 Service ns/run | connect4 LR ns/run | LR − Service connect4 ns, paired |")
  print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
  local xs, ys = {}, {}
  for _, depth in ipairs(depths) do
    local lr, svc = get(tree, depth, "lr"), get(tree, depth, "svc")
    if lr and svc then
      local ratio = paired(lr, svc, "wall", over)
      local delta = paired(lr, svc, "prog", minus)
      print(string.format("| %d | %s | %.0f | %.0f | %.3f [%.3f–%.3f] | %.0f | %.0f | %+.0f [%+.0f – %+.0f] |",
        depth, lookups(tree, depth), median(column(svc, "wall")), median(column(lr, "wall")),
        median(ratio), quantile(ratio, 0.25), quantile(ratio, 0.75),
        median(column(svc, "prog")), median(column(lr, "prog")),
        median(delta), quantile(delta, 0.25), quantile(delta, 0.75)))
      xs[#xs + 1] = math.min(depth, 16)
      ys[#ys + 1] = median(delta)
    end
  end
  if #xs >= 2 then
    -- least squares of the paired LR − Service delta on the number of levels walked
    local n, sx, sy, sxx, sxy = #xs, 0, 0, 0, 0
    for i = 1, n do
      sx, sy, sxx, sxy = sx + xs[i], sy + ys[i], sxx + xs[i] * xs[i], sxy + xs[i] * ys[i]
    end
    local slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    local intercept = (sy - slope * sx) / n
    print()
    print(string.format("%s: LR − Service connect4 delta ≈ %+.0f ns %+.1f ns × levels walked (least squares over"
      .. " depths %s, on the medians)", tree, intercept, slope, table.concat(xs, ", ")))
    -- the same fit within each round, on that round's paired deltas: the spread across rounds is the noise
    local slopes = {}
    for round = 1, rounds do
      local rx, ry = {}, {}
      for _, depth in ipairs(depths) do
        local lr, svc = get(tree, depth, "lr"), get(tree, depth, "svc")
        if lr and svc and lr[round] and svc[round] then
          rx[#rx + 1] = math.min(depth, 16)
          ry[#ry + 1] = lr[round].prog - svc[round].prog
        end
      end
      if #rx >= 2 then
        local mx, my = 0, 0
        for i = 1, #rx do
          mx, my = mx + rx[i] / #rx, my + ry[i] / #rx
        end
        local num, den = 0, 0
        for i = 1, #rx do
          num, den = num + (rx[i] - mx) * (ry[i] - my), den + (rx[i] - mx) ^ 2
        end
        if den > 0 then
          slopes[#slopes + 1] = num / den
        end
      end
    end
    if #slopes > 0 then
      print(string.format("%s: per-round fits, median %+.1f ns per level [%+.1f – %+.1f] over %d rounds", tree,
        median(slopes), quantile(slopes, 0.25), quantile(slopes, 0.75), #slopes))
    end
  end
end

-- the patched datapath against the stock one, LocalRedirect at the same depth, same round
if trees.stock and #trees > 1 then
  for _, tree in ipairs(trees) do
    if tree ~= "stock" then
      print()
      print(string.format("### LocalRedirect connect4, %s against stock (same depth, same round)", tree))
      print()
      print("| client depth | stock ns/run | " .. tree .. " ns/run | " .. tree .. " − stock, paired | LR/Service wall"
        .. " stock | LR/Service wall " .. tree .. " |")
      print("| ---: | ---: | ---: | ---: | ---: | ---: |")
      for _, depth in ipairs(depths) do
        local a, b = get("stock", depth, "lr"), get(tree, depth, "lr")
        if a and b then
          local delta = paired(b, a, "prog", minus)
          print(string.format("| %d | %.0f | %.0f | %+.0f [%+.0f – %+.0f] | %.3f | %.3f |", depth,
            median(column(a, "prog")), median(column(b, "prog")), median(delta), quantile(delta, 0.25),
            quantile(delta, 0.75),
            median(paired(a, get("stock", depth, "svc"), "wall", over)),
            median(paired(b, get(tree, depth, "svc"), "wall", over))))
        end
      end
    end
  end
end
