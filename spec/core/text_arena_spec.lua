-- The text arena (core/text_arena.c) through its binding: the store keeps
-- its Services' and EndpointSlices' texts in one, out of the Lua heap.
local core = require("balancing.core")

describe("core.text_arena", function()
  it("gives back each text by its ref, until it is dropped", function()
    local arena = core.text_arena()
    local a, b = arena:put("first"), arena:put("second\0with a zero byte")
    assert.are_not.equal(a, b)
    assert.equals("first", arena:get(a))
    assert.equals("second\0with a zero byte", arena:get(b))
    assert.is_true(arena:drop(a))
    assert.is_nil(arena:get(a))
    assert.is_false(arena:drop(a)) -- (already dropped)
    assert.equals("second\0with a zero byte", arena:get(b))
    assert.same({ texts = 1, live_bytes = 23 }, { texts = arena:stats().texts, live_bytes = arena:stats().live_bytes })
  end)

  it("answers refs that name no text with nothing", function()
    local arena = core.text_arena()
    arena:put("x")
    for _, ref in ipairs({ 0, -1, 2, 1.5, 2 ^ 40 }) do
      assert.is_nil(arena:get(ref), tostring(ref))
      assert.is_false(arena:drop(ref), tostring(ref))
    end
    assert.has_error(function() arena:get({}) end)
  end)

  it("keeps a text longer than a block", function()
    local arena = core.text_arena()
    local long = string.rep("0123456789", 300000) -- 3 MB
    local small = arena:put("small")
    local ref = arena:put(long)
    assert.equals(long, arena:get(ref))
    assert.equals("small", arena:get(small))
    arena:drop(ref)
    assert.is_true(arena:stats().capacity < #long)
  end)

  it("keeps an empty text", function()
    local arena = core.text_arena()
    local ref = arena:put("")
    assert.equals("", arena:get(ref))
  end)

  it("reuses the refs of dropped texts", function()
    local arena = core.text_arena()
    local first = arena:put("a")
    arena:put("b")
    arena:drop(first)
    assert.equals(first, arena:put("c"))
    assert.equals("c", arena:get(first))
  end)

  it("frees what dropped texts held: blocks under half live are emptied, and every live text stays as it was",
    function()
    local arena = core.text_arena()
    local refs = {}
    for i = 1, 20000 do
      refs[i] = arena:put(string.rep(string.char(65 + i % 26), 100 + i % 400) .. i)
    end
    local before = arena:stats()
    for i = 1, 20000 do
      if i % 10 ~= 0 then
        arena:drop(refs[i])
      end
    end
    local after = arena:stats()
    assert.is_true(after.compactions > before.compactions)
    assert.equals(2000, after.texts)
    -- what the blocks hold is within twice what lives, and the block being filled (1 MiB)
    assert.is_true(after.capacity <= 2 * after.live_bytes + 2 ^ 20 * 2,
      string.format("%d bytes of blocks for %d live", after.capacity, after.live_bytes))
    assert.is_true(after.capacity <= before.capacity / 3)
    for i = 10, 20000, 10 do
      assert.equals(string.rep(string.char(65 + i % 26), 100 + i % 400) .. i, arena:get(refs[i]))
    end
    -- and it keeps taking texts
    local ref = arena:put("after the compaction")
    assert.equals("after the compaction", arena:get(ref))
  end)

  describe("with a dictionary (the store's: balancing.packed.DICTIONARY)", function()
    local packed = require("balancing.packed")
    local manifests = require("balancing.manifests")
    local trim = require("balancing.trim")

    -- the example cluster's Services and EndpointSlices as the store packs them
    local function example_texts()
      local objects = assert(manifests.read_dir("examples/cluster/manifests"))
      local texts = {}
      for _, obj in ipairs(objects) do
        if obj.kind == "Service" or obj.kind == "EndpointSlice" then
          texts[#texts + 1] = assert(packed.pack(trim.object(obj)))
        end
      end
      assert.is_true(#texts > 10)
      return texts
    end

    it("gives back every text byte for byte, holding a fraction of their bytes", function()
      local arena = core.text_arena(packed.DICTIONARY)
      local texts, refs = example_texts(), {}
      for i, text in ipairs(texts) do
        refs[i] = arena:put(text)
      end
      for i, text in ipairs(texts) do
        assert.equals(text, arena:get(refs[i]))
      end
      local stats = arena:stats()
      assert.equals(#texts, stats.texts)
      local total = 0
      for _, text in ipairs(texts) do
        total = total + #text
      end
      assert.equals(total, stats.text_bytes)
      assert.is_true(stats.live_bytes * 2 < stats.text_bytes,
        string.format("%d bytes held for %d of text", stats.live_bytes, stats.text_bytes))
    end)

    it("holds a text that deflate would not make smaller as it is", function()
      local arena = core.text_arena(packed.DICTIONARY)
      math.randomseed(7)
      local bytes = {}
      for i = 1, 300 do
        bytes[i] = string.char(math.random(0, 255))
      end
      local noise = table.concat(bytes)
      local ref = arena:put(noise)
      assert.equals(noise, arena:get(ref))
      assert.same({ live_bytes = #noise, text_bytes = #noise },
        { live_bytes = arena:stats().live_bytes, text_bytes = arena:stats().text_bytes })
      -- and the one-byte and empty texts, which cannot shrink either
      local one, empty = arena:put("x"), arena:put("")
      assert.equals("x", arena:get(one))
      assert.equals("", arena:get(empty))
    end)

    it("keeps deflated texts through compactions, zero bytes and texts longer than a block", function()
      local arena = core.text_arena(packed.DICTIONARY)
      -- (hex digits of a generator's numbers deflate about 2x: 20,000 texts fill blocks)
      local function text_of(i)
        local digits, x = {}, i
        for k = 1, 24 do
          x = (x * 1103515245 + 12345) % 2147483648
          digits[k] = string.format("%08x", x)
        end
        return '{"kind":"Service","metadata":{"name":"svc-' .. i .. '","uid":"' .. table.concat(digits)
          .. '"}}' .. string.rep("\0" .. string.char(65 + i % 26), i % 50)
      end
      local refs = {}
      for i = 1, 20000 do
        refs[i] = arena:put(text_of(i))
      end
      local long = string.rep("0123456789", 300000) -- 3 MB, deflated to a few KB
      local long_ref = arena:put(long)
      local before = arena:stats()
      assert.is_true(before.live_bytes < before.text_bytes / 2)
      for i = 1, 20000 do
        if i % 10 ~= 0 then
          assert.is_true(arena:drop(refs[i]))
        end
      end
      local after = arena:stats()
      assert.is_true(after.compactions > before.compactions)
      assert.equals(2001, after.texts)
      for i = 10, 20000, 10 do
        assert.equals(text_of(i), arena:get(refs[i]))
      end
      assert.equals(long, arena:get(long_ref))
    end)
  end)
end)
