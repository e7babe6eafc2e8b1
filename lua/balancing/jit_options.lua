-- LuaJIT's compiler limits for the agent's Lua state, raised once when this
-- module is first required (balancing.abi requires it, so every program of
-- lua/balancing gets them; an override of this file changes them).
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

function M.apply()
  if type(jit) == "table" and type(jit.opt) == "table" and jit.opt.start then
    jit.opt.start(unpack(M.OPTIONS))
    return true
  end
  return false
end

M.apply()

return M
