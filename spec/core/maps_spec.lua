-- Map handles of balancing.core on the real kernel (docs/core-api.md, "Map
-- handles"): typed single and batch writes with FFI structs of
-- bpf/balancing.h, dumps, and errors that name the map and the decoded key.
local core_env = require("helpers.core_env")
local abi = require("balancing.abi")
local ffi = require("ffi")

local function service_value(id, total)
  local value = ffi.new("struct service_value")
  value.service_id = id
  value.total_count = total or 1
  return value
end

local decode = core_env.decode

local function service_map(env, size)
  local dp = env:load{ max_services = size or 64 }
  return assert(dp:map("map_service")), dp
end

describe("a map handle", function()
  after_each(core_env.close_all)

  it("describes its map: name, type, key and value size, max_entries", function()
    local env = core_env.open(pending)
    local map = service_map(env, 64)

    assert.equals("map_service", map.name)
    assert.equals("hash", map.type)
    assert.equals(ffi.sizeof("struct service_key"), map.key_size)
    assert.equals(ffi.sizeof("struct service_value"), map.value_size)
    assert.equals(64, map.max_entries)
  end)

  it("round-trips update, lookup and delete with FFI structs", function()
    local env = core_env.open(pending)
    local map = service_map(env)
    local key = abi.service_key("127.10.0.1", 80, "TCP", "service")

    assert.is_true(map:update(key, service_value(42, 3)))
    local value = decode("struct service_value", assert(map:lookup(key)))
    assert.equals(42, value.service_id)
    assert.equals(3, value.total_count)

    assert.is_true(map:delete(key))
    assert.is_false(map:lookup(key))
    assert.is_false(map:delete(key))
  end)

  it("accepts strings of exactly the key and value size, and references into FFI arrays", function()
    local env = core_env.open(pending)
    local map = service_map(env)
    local keys = ffi.new("struct service_key[2]")
    keys[1] = abi.service_key("127.10.0.2", 53, "UDP", "service")
    local value = service_value(7)

    assert.is_true(map:update(ffi.string(keys[1], 8), ffi.string(value, 16)))
    assert.truthy(map:lookup(keys[1]))                                      -- a reference
    assert.truthy(map:lookup(ffi.cast("struct service_key *", keys) + 1))   -- a pointer
  end)

  it("refuses a key or value of the wrong size, naming the map and the sizes", function()
    local env = core_env.open(pending)
    local map = service_map(env)
    local key = abi.service_key("127.10.0.1", 80, "TCP", "service")

    local ok, err, code = map:update("abc", service_value(1))
    assert.is_nil(ok)
    assert.equals("map_service key: 3 bytes given, key size is 8", err)
    assert.equals(-22, code)

    ok, err, code = map:update(key, ffi.new("struct backend_value"))
    assert.is_nil(ok)
    assert.equals("map_service value: 8 bytes given, value size is 16", err)
    assert.equals(-22, code)

    ok, err = map:lookup(12)
    assert.is_nil(ok)
    assert.matches("expected FFI cdata or a string, got number", err)
  end)

  it("names the map and the decoded key when the kernel refuses a write", function()
    local env = core_env.open(pending)
    local map = service_map(env)
    local key = abi.service_key("127.10.0.1", 80, "TCP", "service")
    assert.is_true(map:update(key, service_value(1)))

    local ok, err, code = map:update(key, service_value(2), "noexist")
    assert.is_nil(ok)
    assert.equals("update map_service key 127.10.0.1:80/TCP service: File exists", err)
    assert.equals(-17, code)

    local absent = abi.service_key("*", 30080, "UDP", "service")
    ok, err, code = map:update(absent, service_value(2), "exist")
    assert.is_nil(ok)
    assert.equals("update map_service key *:30080/UDP service: No such file or directory", err)
    assert.equals(-2, code)
  end)

  it("says a full map is full, with its max_entries and the key that did not fit", function()
    local env = core_env.open(pending)
    local map = service_map(env, 4)
    for i = 1, 4 do
      assert.is_true(map:update(abi.service_key("127.10.0." .. i, 80, "TCP", "service"), service_value(i)))
    end

    local ok, err, code = map:update(abi.service_key("127.10.0.5", 80, "TCP", "service"), service_value(5))
    assert.is_nil(ok)
    assert.equals("update map_service key 127.10.0.5:80/TCP service: map is full (max_entries 4)", err)
    assert.equals(-7, code)
  end)

  it("decodes the keys of every map of the header, and shows other keys in hex", function()
    local env = core_env.open(pending)
    local dp, dir = env:load()
    local frontend = abi.service_key("10.96.0.10", 53, "UDP", "localRedirect")

    local backend_key = ffi.new("struct backend_key", { frontend = frontend, slot = 2 })
    assert.equals("10.96.0.10:53/UDP localRedirect slot 2", dp:map("map_backend"):describe_key(backend_key))
    local affinity_key = ffi.new("struct affinity_key", { netns_cookie = 4096, frontend = frontend })
    assert.equals("netns 4096 10.96.0.10:53/UDP localRedirect", dp:map("map_affinity"):describe_key(affinity_key))
    local nat_key = ffi.new("struct nat_record_key", { socket_cookie = 77, address = abi.ipv4_to_u32("127.0.0.3"),
      port = abi.htons(8080) })
    assert.equals("socket 77 backend 127.0.0.3:8080", dp:map("map_nat_record"):describe_key(nat_key))
    local node_key = ffi.new("struct node_ip_key", { address = abi.ipv4_to_u32("192.168.1.5") })
    assert.equals("192.168.1.5", dp:map("map_node_ip"):describe_key(node_key))
    assert.equals("node 9", dp:map("map_node_proxy_ip"):describe_key(ffi.new("struct node_proxy_ip_key", 9)))

    assert.is_true(os.execute("bpftool map create " .. core_env.quote(dir .. "/map_foreign")
      .. " type hash key 4 value 4 entries 4 name map_foreign") == 0)
    local foreign = assert(env.core.open_maps(dir)).map_foreign
    local ok, err = foreign:delete("\1\2\3\255")
    assert.is_false(ok) -- absent
    assert.is_nil(err)
    assert.equals("010203ff", foreign:describe_key("\1\2\3\255"))
  end)

  it("keeps working after the loader is closed (it holds its own fd), and refuses use once closed", function()
    local env = core_env.open(pending)
    local map, dp = service_map(env)
    dp:close()
    local key = abi.service_key("127.10.0.1", 80, "TCP", "service")

    assert.is_true(map:update(key, service_value(1)))

    assert.is_true(map:close())
    local ok, err, code = map:lookup(key)
    assert.is_nil(ok)
    assert.equals("map map_service: handle is closed", err)
    assert.equals(-9, code)
  end)
end)

describe("batches and dumps", function()
  after_each(core_env.close_all)

  local function frontends(count)
    local keys = ffi.new("struct service_key[?]", count)
    local values = ffi.new("struct service_value[?]", count)
    for i = 0, count - 1 do
      keys[i] = abi.service_key(string.format("127.10.%d.%d", math.floor(i / 250), i % 250 + 1), 80, "TCP",
        "service")
      values[i].service_id = i + 1
    end
    return keys, values
  end

  it("update_batch writes every entry and dump reads them all back", function()
    local env = core_env.open(pending)
    local map = service_map(env, 4096)
    local keys, values = frontends(1000)

    assert.equals(1000, map:update_batch(keys, values, 1000))

    local entries = assert(map:dump())
    assert.equals(1000, #entries)
    local ids = {}
    for _, entry in ipairs(entries) do
      local key = decode("struct service_key", entry.key)
      local value = decode("struct service_value", entry.value)
      ids[value.service_id] = abi.u32_to_ipv4(key.address)
    end
    assert.equals("127.10.0.1", ids[1])
    assert.equals("127.10.3.250", ids[1000])
  end)

  it("takes the count from the size of the arrays when it is not given", function()
    local env = core_env.open(pending)
    local map = service_map(env)
    local keys, values = frontends(3)

    assert.equals(3, map:update_batch(keys, values))
    assert.equals(3, #map:dump())
  end)

  it("refuses arrays shorter than the count, naming the map", function()
    local env = core_env.open(pending)
    local map = service_map(env)
    local keys, values = frontends(3)

    local ok, err, code = map:update_batch(keys, values, 4)
    assert.is_nil(ok)
    assert.equals("map_service keys: 24 bytes given for 4 entries of 8 bytes", err)
    assert.equals(-22, code)
  end)

  it("names the entry a batch update stopped at, and how many went in before it", function()
    local env = core_env.open(pending)
    local map = service_map(env)
    local keys, values = frontends(5)
    assert.is_true(map:update(keys[2], values[2]))

    local ok, err, code, done = map:update_batch(keys, values, 5, "noexist")

    assert.is_nil(ok)
    assert.equals("update map_service key 127.10.0.3:80/TCP service: File exists", err)
    assert.equals(-17, code)
    assert.equals(2, done)
  end)

  it("delete_batch deletes what exists and skips absent keys", function()
    local env = core_env.open(pending)
    local map = service_map(env)
    local keys, values = frontends(6)
    assert.equals(6, map:update_batch(keys, values, 6))
    assert.is_true(map:delete(keys[1]))
    assert.is_true(map:delete(keys[4]))

    assert.equals(4, map:delete_batch(keys, 6))

    assert.equals(0, #map:dump())
    assert.equals(0, map:delete_batch(keys, 6))
  end)

  it("dumps an array map and an LRU map", function()
    local env = core_env.open(pending)
    local dp = env:load()

    local configure = assert(dp:map("map_configure"):dump())
    assert.equals(1, #configure)
    assert.equals(abi.C.BALANCING_ABI_VERSION, decode("struct configure_value", configure[1].value).abi_version)

    local nat = dp:map("map_nat_record")
    local key = ffi.new("struct nat_record_key", { socket_cookie = 5, address = abi.ipv4_to_u32("127.0.0.1"),
      port = abi.htons(80) })
    assert.is_true(nat:update(key, ffi.new("struct nat_record_value")))
    local entries = assert(nat:dump())
    assert.equals(1, #entries)
    assert.equals(5, tonumber(decode("struct nat_record_key", entries[1].key).socket_cookie))
  end)

  it("clear deletes every entry and says how many", function()
    local env = core_env.open(pending)
    local map = service_map(env, 1024)
    local keys, values = frontends(300)
    assert.equals(300, map:update_batch(keys, values))

    assert.equals(300, map:clear())

    assert.equals(0, #map:dump())
  end)

  it("a ring buffer has no entries to dump: the error names it", function()
    local env = core_env.open(pending)
    local dp = env:load()

    local ok, err, code = dp:map("map_event"):dump()
    assert.is_nil(ok)
    assert.matches("^dump map_event: ", err)
    assert.is_true(code < 0)
  end)
end)
