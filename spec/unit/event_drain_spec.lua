-- One loop turn of the agent's event reader (balancing.event_drain): bounded
-- work per turn, shedding when the ring stays more than half full, drops
-- counted by stage and said at most once per interval. A fake reader and a
-- fake map_event_drops stand for the kernel's (the real ones: the e2e spec
-- agent_events_flood_spec.lua).
local cjson = require("cjson")
local ffi = require("ffi")
local log = require("balancing.log")
local event_drain = require("balancing.event_drain")

-- A reader whose ring holds `queued` events in `size` bytes, 100 bytes each.
local function fake_reader(queued, size)
  local reader = { queued = queued, size = size or 1000000, polls = {} }
  function reader:poll(_, max)
    self.polls[#self.polls + 1] = max
    local n = math.min(max, self.queued)
    self.queued = self.queued - n
    local list = {}
    for i = 1, n do
      list[i] = { n = i }
    end
    return list
  end
  function reader:backlog()
    return self.queued * 100, self.size
  end
  function reader:discard(max)
    local n = math.min(max, self.queued)
    self.queued = self.queued - n
    return n
  end
  return reader
end

-- map_event_drops with two CPUs' counts.
local function fake_drops(counts)
  local map = { counts = counts }
  function map:lookup(key)
    assert(#key == 4)
    return ffi.string(ffi.new("uint64_t[2]", self.counts), 16)
  end
  return map
end

describe("event_drain", function()
  local lines, now
  before_each(function()
    lines, now = {}, 1000
    log.set_sink(function(line) lines[#lines + 1] = cjson.decode(line) end)
  end)
  after_each(function()
    log.set_sink(function(line) io.stderr:write(line, "\n") end)
  end)

  local function drops_said()
    local said = {}
    for _, line in ipairs(lines) do
      if line.msg == event_drain.MESSAGE then
        said[#said + 1] = line
      end
    end
    return said
  end

  local function new_drain(reader, drops_map, out)
    return event_drain.new({ reader = reader, drops_map = drops_map, interval = 10,
      clock = function() return now end,
      format = function(ev) return "line " .. ev.n end,
      write = function(text) out[#out + 1] = text end })
  end

  it("formats at most FORMAT_PER_TURN events a turn and leaves the rest for the next", function()
    local reader, out = fake_reader(event_drain.FORMAT_PER_TURN + 5), {}
    local drain = new_drain(reader, nil, out)

    assert.same({ event_drain.FORMAT_PER_TURN, 0 }, { drain:turn() })
    assert.same({ 5, 0 }, { drain:turn() })
    local _, newlines = out[1]:gsub("\n", "")
    assert.equals(event_drain.FORMAT_PER_TURN, newlines)
    assert.equals(0, select(2, drain:dropped()))
  end)

  it("sheds when the ring is still more than half full after a turn, and counts it as the agent's", function()
    local reader, out = fake_reader(event_drain.FORMAT_PER_TURN + 8000, 1000000), {} -- 9024 × 100 B: 90 %
    local drain = new_drain(reader, nil, out)

    local written, shed = drain:turn()

    assert.equals(event_drain.FORMAT_PER_TURN, written)
    assert.equals(8000, shed)
    assert.same({ 0, 8000, 0 }, { drain:dropped() })
    assert.equals(8000, drops_said()[1].agent)
  end)

  it("sheds at most SHED_PER_TURN events a turn", function()
    local reader = fake_reader(event_drain.FORMAT_PER_TURN + event_drain.SHED_PER_TURN + 100, 1000)
    local drain = new_drain(reader, nil, {})

    assert.equals(event_drain.SHED_PER_TURN, select(2, drain:turn()))
    assert.equals(100, reader.queued)
  end)

  it("counts the ring's drops from map_event_drops summed over the CPUs, from this agent's start in the log", function()
    local drops = fake_drops({ 3, 4 }) -- before this agent
    local drain = new_drain(fake_reader(0), drops, {})
    drops.counts = { 10, 20 }

    drain:turn()

    assert.same({ 30, 0, 0 }, { drain:dropped() })
    local said = drops_said()
    assert.equals(1, #said)
    assert.equals(23, said[1].ring)
    assert.equals(0, said[1].agent)
    assert.equals("warn", said[1].level)
  end)

  it("says the drops at most once per interval, with the count since the last line", function()
    local drops = fake_drops({ 0, 0 })
    local drain = new_drain(fake_reader(0), drops, {})

    drops.counts = { 5, 0 }
    drain:turn()
    drops.counts = { 9, 0 }
    now = now + 9.9
    drain:turn()
    assert.equals(1, #drops_said(), "not again within the interval")

    now = now + 0.2
    drain:turn()
    local said = drops_said()
    assert.equals(2, #said)
    assert.equals(4, said[2].ring)
  end)

  it("says nothing when nothing was lost", function()
    local drain = new_drain(fake_reader(3), fake_drops({ 0, 0 }), {})

    drain:turn()
    now = now + 60
    drain:turn()
    assert.is_false(drain:report(true))
    assert.same({}, drops_said())
  end)

  it("says what is unsaid on demand (the agent's stop), interval or not", function()
    local drops = fake_drops({ 0, 0 })
    local drain = new_drain(fake_reader(0), drops, {})
    drops.counts = { 1, 0 }
    drain:turn()
    drops.counts = { 3, 0 }

    assert.is_true(drain:report(true))
    assert.equals(2, drops_said()[2].ring)
  end)

  it("counts the lines the output refused as stage output, and never as written", function()
    local written = 0
    local drain = event_drain.new({ reader = fake_reader(10), interval = 10, clock = function() return now end,
      format = function(ev) return "line " .. ev.n end,
      write = function() return 4 end, -- the output took 6 lines, refused the last 4
      written = function(n) written = written + n end })

    drain:turn()

    assert.same({ 0, 0, 4 }, { drain:dropped() })
    assert.equals(6, written)
    local said = drops_said()
    assert.equals(1, #said)
    assert.equals(4, said[1].output)
    assert.equals(0, said[1].ring + said[1].agent)
  end)

  it("keeps the drops unsaid while the output refuses the drop line, and says them all once it takes it", function()
    local refusing = true
    log.set_sink(function(line)
      if refusing then
        return false
      end
      lines[#lines + 1] = cjson.decode(line)
    end)
    local drain = event_drain.new({ reader = fake_reader(10), interval = 10, clock = function() return now end,
      format = function(ev) return "line " .. ev.n end, write = function() return 10 end })
    drain:turn()
    now = now + 0.1
    assert.is_false(drain:report())
    refusing = false
    assert.is_true(drain:report())
    assert.equals(10, drops_said()[1].output)
  end)
end)
