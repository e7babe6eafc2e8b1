-- LuaJIT's compiler limits and collector settings for the agent's Lua state,
-- set once when this module is first required (balancing.abi requires it,
-- so every program of lua/balancing gets them; an override of this file
-- changes them).
--
-- LuaJIT keeps at most `maxtrace` compiled traces (default 1000) in at most
-- `maxmcode` KB of machine code (default 512). When either is full it throws
-- every trace away and starts compiling again ("flush"). A full reconcile of
-- scripts/bench/reconcile's cluster (policies, Services, store) needs about
-- 1,200 traces and 1.7 MB of machine code: with the defaults the benchmark
-- process flushed some 60 times, ran two to three times slower, and its speed
-- depended on which loops happened to be compiled when a measurement ran.
-- The limits cost nothing until the code is compiled; then memory for the
-- machine code only, allocated as needed.
local M = {}

M.OPTIONS = { "maxtrace=4000", "maxmcode=8192" }

-- The collector's settings. LuaJIT starts a cycle when the heap has grown
-- to `pause` % of what the last one left (default 200: twice the live
-- data), and a cycle does `stepmul` % of work per unit allocated (default
-- 200). LuaJIT's allocator keeps the pages it was once given, so the
-- agent's resident Lua heap is its peak: with the defaults, twice the live
-- data, ~29 MiB for ~14.5 MiB live at 10,000 Services. At 150 and 400 a
-- cycle starts at 1.5 times the live data and ends sooner
-- (docs/benchmarks.md, "Agent at scale": the measurements).
M.GC = { pause = 150, stepmul = 400 }

function M.apply()
  collectgarbage("setpause", M.GC.pause)
  collectgarbage("setstepmul", M.GC.stepmul)
  if type(jit) == "table" and type(jit.opt) == "table" and jit.opt.start then
    jit.opt.start(unpack(M.OPTIONS))
    return true
  end
  return false
end

M.apply()

return M
