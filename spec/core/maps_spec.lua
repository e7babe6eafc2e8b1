-- The map layer of balancing.core on the real kernel (docs/core-api.md, "Map
-- handles" and "Settings"): read-only map handles (lookup, dump, describe_key)
-- with FFI structs of bpf/balancing.h; the map layer's batch writes and their
-- errors, reached the way every entry reaches the kernel — through
-- core.applier; and core.configure, the one write outside the applier.
local core_env = require("helpers.core_env")
local bpftool_write = require("helpers.bpftool_write")
local abi = require("balancing.abi")
local ffi = require("ffi")

local decode = core_env.decode

local function service_map(env, size)
  local dp, dir = env:load{ max_services = size or 64 }
  return assert(dp:map("map_service")), dp, dir
end

-- count frontends 127.10.x.y:80/TCP, service IDs 1..count, no backends.
local function frontends(count)
  local list = {}
  for i = 1, count do
    local value = ffi.new("struct service_value")
    value.service_id = i
    list[i] = {
      key = abi.service_key(string.format("127.10.%d.%d", math.floor((i - 1) / 250), (i - 1) % 250 + 1), 80,
        "TCP", "service"),
      value = value,
      backends = {},
    }
  end
  return list
end

-- The applier of a test (on a pin directory or a datapath), closed with the
-- environment: one applier keeps the shadow of what each owner wrote.
local function applier_of(env, target)
  local applier = assert(env.core.applier(target))
  env:on_close(function()
    applier:close()
  end)
  return applier
end

-- The frontends as the entries of one owner; returns what apply returned.
local function apply(applier, owner, list)
  return applier:apply(owner, { owner = owner, frontends = list })
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
    assert.is_number(map.id)
  end)

  it("is read-only: no update, delete, batch or clear — entries are written by core.applier", function()
    local env = core_env.open(pending)
    local map, dp, dir = service_map(env)
    local key = abi.service_key("127.10.0.1", 80, "TCP", "service")
    local handles = { map, dp:map("map_backend"), dp:map("map_configure"), assert(env.core.open_maps(dir)).map_service }

    for _, handle in ipairs(handles) do
      for _, name in ipairs({ "update", "delete", "update_batch", "delete_batch", "clear" }) do
        assert.is_nil(handle[name], handle.name .. ":" .. name)
      end
    end
    assert.has_error(function()
      map:update(key, ffi.new("struct service_value"))
    end)
    assert.is_false(map:lookup(key), "nothing was written")
    assert.equals(0, #map:dump())
  end)

  it("reads back what the applier wrote, with FFI structs", function()
    local env = core_env.open(pending)
    local map, dp = service_map(env)
    local list = frontends(1)
    list[1].value.total_count = 1
    list[1].backends = { abi.backend_value("127.0.0.1", 8080, true) }

    local applier = applier_of(env, dp)
    assert(apply(applier, "spec/one", list))

    local value = decode("struct service_value", assert(map:lookup(list[1].key)))
    assert.equals(1, value.service_id)
    assert.equals(1, value.total_count)
    local slot = ffi.new("struct backend_key", { frontend = list[1].key, slot = 0 })
    local backend = decode("struct backend_value", assert(dp:map("map_backend"):lookup(slot)))
    assert.equals("127.0.0.1", abi.u32_to_ipv4(backend.address))

    assert(apply(applier, "spec/one", {})) -- the owner lets it go
    assert.is_false(map:lookup(list[1].key))
    assert.is_false(dp:map("map_backend"):lookup(slot))
  end)

  it("looks up with a string of exactly the key size, and references and pointers into FFI arrays", function()
    local env = core_env.open(pending)
    local map, dp = service_map(env)
    local keys = ffi.new("struct service_key[2]")
    keys[1] = abi.service_key("127.10.0.2", 53, "UDP", "service")
    local entry = { key = keys[1], value = ffi.new("struct service_value"), backends = {} }
    assert(apply(applier_of(env, dp), "spec/udp", { entry }))

    assert.truthy(map:lookup(ffi.string(keys[1], 8)))                       -- a string
    assert.truthy(map:lookup(keys[1]))                                      -- a reference
    assert.truthy(map:lookup(ffi.cast("struct service_key *", keys) + 1))   -- a pointer
    assert.is_false(map:lookup(keys[0]))                                    -- absent
  end)

  it("refuses a key of the wrong size, naming the map and the sizes", function()
    local env = core_env.open(pending)
    local map = service_map(env)

    local ok, err, code = map:lookup("abc")
    assert.is_nil(ok)
    assert.equals("map_service key: 3 bytes given, key size is 8", err)
    assert.equals(-22, code)

    ok, err, code = map:describe_key(ffi.new("struct backend_key"))
    assert.is_nil(ok)
    assert.equals("map_service key: 12 bytes given, key size is 8", err)
    assert.equals(-22, code)

    ok, err = map:lookup(12)
    assert.is_nil(ok)
    assert.matches("expected FFI cdata or a string, got number", err)
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
    assert.equals("index 0", dp:map("map_configure"):describe_key(ffi.new("struct configure_key")))

    assert.is_true(os.execute("bpftool map create " .. core_env.quote(dir .. "/map_foreign")
      .. " type hash key 4 value 4 entries 4 name map_foreign") == 0)
    local foreign = assert(env.core.open_maps(dir)).map_foreign
    local ok, err = foreign:lookup("\1\2\3\255")
    assert.is_false(ok) -- absent
    assert.is_nil(err)
    assert.equals("010203ff", foreign:describe_key("\1\2\3\255"))
  end)

  it("keeps working after the loader is closed (it holds its own fd), and refuses use once closed", function()
    local env = core_env.open(pending)
    local map, dp, dir = service_map(env)
    dp:close()
    local list = frontends(1)

    assert(apply(applier_of(env, dir), "spec/after-close", list))
    assert.truthy(map:lookup(list[1].key))

    assert.is_true(map:close())
    for _, call in ipairs({ function() return map:lookup(list[1].key) end, function() return map:dump() end }) do
      local ok, err, code = call()
      assert.is_nil(ok)
      assert.equals("map map_service: handle is closed", err)
      assert.equals(-9, code)
    end
  end)
end)

describe("the map layer's writes, through the applier", function()
  after_each(core_env.close_all)

  it("writes 1000 frontends in one batch and dump reads them all back", function()
    local env = core_env.open(pending)
    local map, dp = service_map(env, 4096)

    local stats = assert(apply(applier_of(env, dp), "spec/many", frontends(1000)))
    assert.same({ written = 1000, deleted = 0 }, stats.map_service)

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

  it("says a full map is full, naming the map, the key that did not fit and max_entries; the rest stays", function()
    local env = core_env.open(pending)
    local map, dp = service_map(env, 4)

    local ok, err, code = apply(applier_of(env, dp), "spec/full", frontends(5))

    assert.is_nil(ok)
    assert.matches("^owner spec/full: update map_service key 127%.10%.0%.%d:80/TCP service: "
      .. "map is full %(max_entries 4%)$", err)
    assert.equals(-7, code) -- E2BIG
    assert.equals(4, #map:dump(), "the entries before the one that did not fit went in")
  end)

  it("deletes in a batch, skipping keys that are already gone", function()
    local env = core_env.open(pending)
    local map, dp, dir = service_map(env)
    local list = frontends(6)
    local applier = applier_of(env, dp)
    assert(apply(applier, "spec/six", list))
    -- two entries deleted behind the applier's back (an operator with bpftool)
    bpftool_write.delete(dir .. "/map_service", list[1].key)
    bpftool_write.delete(dir .. "/map_service", list[4].key)
    assert.equals(4, #map:dump())

    local stats = assert(apply(applier, "spec/six", {}))

    assert.equals(0, #map:dump())
    assert.same({ written = 0, deleted = 4 }, stats.map_service, "the 4 that were there; the 2 gone are no error")
  end)
end)

describe("dumps", function()
  after_each(core_env.close_all)

  it("dumps an array map and an LRU map the datapath wrote", function()
    local env = core_env.open(pending)
    local dp = env:load()

    local configure = assert(dp:map("map_configure"):dump())
    assert.equals(1, #configure)
    assert.equals(abi.C.BALANCING_ABI_VERSION, decode("struct configure_value", configure[1].value).abi_version)

    -- a UDP datagram to a frontend from our own cgroup: sendmsg4 records the
    -- translation in map_nat_record (an LRU hash); nothing needs to listen
    local cgroup = env:cgroup()
    assert.is_true(dp:attach(cgroup))
    local backend_port = core_env.free_port()
    core_env.program_frontend(dp, { address = "127.10.0.9", port = 5353, protocol = "UDP", id = 9,
      backend_port = backend_port })
    local output, ok = core_env.run_in_cgroup(cgroup, "exec python3 -c " .. core_env.quote(
      "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.10.0.9', 5353))"))
    assert.is_true(ok, output)

    local nat = dp:map("map_nat_record")
    assert.equals("lru_hash", nat.type)
    local entries = assert(nat:dump())
    assert.equals(1, #entries)
    local key = decode("struct nat_record_key", entries[1].key)
    assert.equals("127.0.0.1", abi.u32_to_ipv4(key.address))
    assert.equals(backend_port, abi.ntohs(key.port))
    assert.is_true(tonumber(key.socket_cookie) > 0)
    assert.is_true(dp:detach())
  end)

  it("dump{nonzero} leaves out the entries whose field is all zero, as an array's unused slots are", function()
    local env = core_env.open(pending)
    local _, dir = env:load{ max_tcp_nat_records = 16 }
    local slot = ffi.new("struct nat_record_tcp")
    slot.key.socket_cookie = 4103
    slot.value.service_id = 12
    bpftool_write.update(dir .. "/map_nat_record_tcp", ffi.new("__u32[1]", 7), slot)
    -- a slot emptied by the datapath: its cookie 0, the rest left as it was
    slot.key.socket_cookie = 0
    bpftool_write.update(dir .. "/map_nat_record_tcp", ffi.new("__u32[1]", 9), slot)
    local map = assert(require("balancing.core").open_maps(dir)).map_nat_record_tcp
    local cookie = { offset = ffi.offsetof("struct nat_record_tcp", "key"), size = 8 }

    assert.equals(16, #assert(map:dump()))
    local filled = assert(map:dump{ nonzero = cookie })
    assert.equals(1, #filled)
    assert.equals(7, decode("__u32[1]", filled[1].key)[0])
    assert.equals(12, decode("struct nat_record_tcp", filled[1].value).value.service_id)
    assert.equals(16, #assert(map:dump{}), "no nonzero: every entry")

    for _, bad in ipairs({ { offset = 36, size = 8 }, { offset = 0, size = 0 }, { size = 8 }, "key" }) do
      local entries, err, code = map:dump{ nonzero = bad }
      assert.is_nil(entries)
      assert.matches("^dump map_nat_record_tcp: nonzero ", err)
      assert.equals(-22, code)
    end
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

describe("core.configure", function()
  after_each(core_env.close_all)

  local function configure_of(dir)
    local map = assert(require("balancing.core").open_maps(dir)).map_configure
    return decode("struct configure_value", assert(map:lookup(ffi.new("struct configure_key"))))
  end

  it("writes the settings given to the pinned map_configure, keeping the others and the ABI version", function()
    local env = core_env.open(pending)
    local dp, dir = env:load{ bpf_log_level = "error", redirect_qos_limit = 5, node_id = 7, events = "all" }
    dp:close()

    assert.is_true(env.core.configure(dir, { bpf_log_level = "verbose" }))
    local value = configure_of(dir)
    assert.equals(abi.C.BPF_LOG_VERBOSE, value.bpf_log_level)
    assert.equals(5, value.redirect_qos_limit)
    assert.equals(abi.C.EVENTS_ALL, value.events)
    assert.equals(7, value.node_id)
    assert.equals(abi.C.BALANCING_ABI_VERSION, value.abi_version)

    assert.is_true(env.core.configure(dir, { redirect_qos_limit = 0, events = "failures", bpf_log_level = 1 }))
    value = configure_of(dir)
    assert.equals(abi.C.BPF_LOG_ERROR, value.bpf_log_level)
    assert.equals(0, value.redirect_qos_limit)
    assert.equals(abi.C.EVENTS_FAILURES, value.events)
    assert.equals(7, value.node_id)
    assert.equals(abi.C.BALANCING_ABI_VERSION, value.abi_version)

    -- the ABI version intact: the next load reuses every map
    local again = env:load{ bpffs = dir }
    for name, state in pairs(again:map_states()) do
      assert.equals("reused", state, name)
    end
  end)

  it("refuses bad values with a message naming the setting, writing nothing", function()
    local env = core_env.open(pending)
    local _, dir = env:load{ bpf_log_level = "info", redirect_qos_limit = 5 }
    local before = configure_of(dir)
    local refused = {
      { { bpf_log_level = "loud" }, "configure bpf_log_level loud: expected verbose, info, error or off (3 to 0)" },
      { { bpf_log_level = 4 }, "configure bpf_log_level 4: expected 0 (off) to 3 (verbose)" },
      { { events = "some" }, "configure events some: expected all, failures or off (0 to 2)" },
      { { events = 3 }, "configure events 3: expected 0 (all) to 2 (off)" },
      { { redirect_qos_limit = -1 }, "configure redirect_qos_limit -1: expected 0 (none) to 4294967295" },
      { { redirect_qos_limit = 1.5 }, "configure redirect_qos_limit 1.5: expected 0 (none) to 4294967295" },
      { { redirect_qos_limit = 2 ^ 32 }, "configure redirect_qos_limit 4294967296: expected 0 (none) to 4294967295" },
      { { redirect_qos_limit = "25" }, "configure redirect_qos_limit 25: expected 0 (none) to 4294967295" },
      { { redirect_qos_limit = true }, "configure redirect_qos_limit: expected 0 (none) to 4294967295, got boolean" },
      { { node_id = 3 }, "configure: unknown setting node_id (bpf_log_level, redirect_qos_limit or events)" },
      { { abi_version = 9 }, "configure: unknown setting abi_version (bpf_log_level, redirect_qos_limit or events)" },
      { { bpf_log_level = "info", redirect_qos_limit = -5 },
        "configure redirect_qos_limit -5: expected 0 (none) to 4294967295" },
      { {}, "configure: nothing to change (give bpf_log_level, redirect_qos_limit or events)" },
    }

    for _, case in ipairs(refused) do
      local ok, err, code = env.core.configure(dir, case[1])
      assert.is_nil(ok, case[2])
      assert.equals(case[2], err)
      assert.equals(-22, code)
    end
    assert.equals(ffi.string(before, ffi.sizeof(before)), ffi.string(configure_of(dir), ffi.sizeof(before)))
    assert.has_error(function()
      env.core.configure(dir, "verbose")
    end)
  end)

  it("leaves a map_configure of another ABI version as it is, and says where nothing is pinned", function()
    local env = core_env.open(pending)
    local _, dir = env:load()
    local other = configure_of(dir)
    other.abi_version = abi.C.BALANCING_ABI_VERSION + 1
    bpftool_write.update(dir .. "/map_configure", ffi.new("struct configure_key"), other)

    local ok, err, code = env.core.configure(dir, { bpf_log_level = "verbose" })
    assert.is_nil(ok)
    assert.equals(string.format("configure map_configure: it holds ABI version %d, this build writes version %d: "
      .. "left as it is", abi.C.BALANCING_ABI_VERSION + 1, abi.C.BALANCING_ABI_VERSION), err)
    assert.equals(-71, code) -- EPROTO
    assert.equals(ffi.string(other, ffi.sizeof(other)), ffi.string(configure_of(dir), ffi.sizeof(other)))

    local empty = env:pin_dir()
    ok, err, code = env.core.configure(empty, { bpf_log_level = "verbose" })
    assert.is_nil(ok)
    assert.matches("map_configure", err, 1, true)
    assert.matches(empty, err, 1, true)
    assert.equals(-2, code)
  end)
end)
