-- LuaJIT's compiler limits and collector settings for the agent's Lua state (docs/lua-modules.md,
-- "balancing.jit_options").
local jit_options = require("balancing.jit_options")

describe("the LuaJIT limits", function()
  it("raise the trace count and machine-code size above LuaJIT's defaults (1000, 512 KB)", function()
    local values = {}
    for _, option in ipairs(jit_options.OPTIONS) do
      local name, value = option:match("^(%w+)=(%d+)$")
      values[name] = tonumber(value)
    end
    assert.is_true(values.maxtrace > 1000)
    assert.is_true(values.maxmcode > 512)
  end)

  it("are accepted by the running LuaJIT", function()
    assert.is_true(jit_options.apply())
  end)

  it("start the collector's cycles sooner than LuaJIT's default pause (200 %), and set them", function()
    assert.is_true(jit_options.GC.pause > 100 and jit_options.GC.pause < 200)
    assert.is_true(jit_options.GC.stepmul >= 200)
    local pause, stepmul = collectgarbage("setpause", 200), collectgarbage("setstepmul", 200)
    jit_options.apply()
    assert.equals(jit_options.GC.pause, collectgarbage("setpause", pause))
    assert.equals(jit_options.GC.stepmul, collectgarbage("setstepmul", stepmul))
  end)
end)
