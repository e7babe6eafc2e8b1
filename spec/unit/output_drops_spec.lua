-- The log lines the agent's stdout refused, said at most once per interval
-- (balancing.output_drops); a line refused itself is tried again, so that
-- the lines said add up to the counter once the reader is back.
local cjson = require("cjson")
local log = require("balancing.log")
local output_drops = require("balancing.output_drops")

describe("output_drops", function()
  local lines, now, total, refusing
  before_each(function()
    lines, now, total, refusing = {}, 1000, 0, false
    log.set_sink(function(line)
      if refusing then
        total = total + 1 -- as the output counts a refused log line
        return false
      else
        lines[#lines + 1] = cjson.decode(line)
      end
    end)
  end)
  after_each(function()
    log.set_sink(function(line) io.stderr:write(line, "\n") end)
  end)

  local function new_reporter()
    return output_drops.new({ dropped = function() return total end, interval = 10,
      clock = function() return now end })
  end

  it("says nothing while nothing was dropped", function()
    local drops = new_reporter()
    assert.is_false(drops:report())
    assert.is_false(drops:report(true))
    assert.same({}, lines)
  end)

  it("says the count since the last line, at most once per interval", function()
    local drops = new_reporter()
    total = 5
    assert.is_true(drops:report())
    total = 8
    now = now + 9.9
    assert.is_false(drops:report())
    now = now + 0.2
    assert.is_true(drops:report())
    assert.equals(2, #lines)
    assert.same({ output_drops.MESSAGE, "warn", 5, 3 }, { lines[1].msg, lines[1].level, lines[1].lines,
      lines[2].lines })
  end)

  it("tries again while its own line is refused, then says everything, itself included", function()
    local drops = new_reporter()
    total = 4
    refusing = true
    assert.is_false(drops:report())
    now = now + 1
    assert.is_false(drops:report()) -- (not said: no interval to wait)
    assert.equals(6, total)
    refusing = false
    now = now + 1
    assert.is_true(drops:report())
    assert.equals(6, lines[1].lines)
  end)
end)
