-- `inspect showMapData` and `setMapData configure` on real pinned maps
-- (CONTRACTS.md "inspect"; issue 9): what `balancing-agent plan` computes for
-- the example cluster, written through the applier, read back decoded.
local abi = require("balancing.abi")
local bpftool_write = require("helpers.bpftool_write")
local cjson = require("cjson")
local core_env = require("helpers.core_env")
local ffi = require("ffi")
local scratch = require("helpers.scratch")
local plan = require("balancing.plan")

local build_dir = os.getenv("BALANCING_BUILD_DIR") or "build"
local INSPECT = build_dir .. "/bin/inspect"

local function run(args)
  return scratch.run("env -u BALANCING_BPFFS " .. INSPECT .. " " .. table.concat(args, " "))
end

-- A frontend of the view as one comparable line, without its owner (the
-- names are the running agent's state; inspect shows IDs until it keeps it).
local function line_of(f)
  local backends = {}
  for i, b in ipairs(f.backends) do
    backends[i] = b.address .. ":" .. b.port .. (b["local"] and "*" or "")
  end
  return table.concat({ f.type, f.mode, f.address, f.port, f.protocol, f.id, f.affinitySeconds,
    tostring(f.localOnly), table.concat(backends, ",") }, " ")
end

local function lines_of(view)
  local out = {}
  for i, f in ipairs(view) do
    out[i] = line_of(f)
  end
  table.sort(out)
  return out
end

-- The example cluster planned for node-1 and written to a fresh pin dir.
local function programmed(env)
  local dp, dir = env:load()
  local result = assert(plan.compute({ manifests = "examples/cluster/manifests", node_name = "node-1" }))
  local applier = assert(env.core.applier(dp))
  for _, entries in ipairs(result.entries) do
    assert(applier:apply(entries.owner, entries))
  end
  applier:close()
  return dir, result
end

describe("inspect", function()
  after_each(core_env.close_all)

  it("--json showMapData all gives the frontends and backends plan computed, as programmed in the maps", function()
    local env = core_env.open(pending)
    local dir, result = programmed(env)
    local status, stdout, stderr = run({ "--bpffs", dir, "--json", "showMapData", "all" })
    assert.equals(0, status, stderr)
    local doc = cjson.decode(stdout)
    assert.same(lines_of(result.view), lines_of(doc.frontends))
    assert.is_true(#doc.frontends > 20)
    assert.is_table(doc.maps.map_node_ip)
    assert.equals(1, #doc.maps.map_configure)
  end)

  it("showMapData service prints the frontends as plan's table does", function()
    local env = core_env.open(pending)
    local dir = programmed(env)
    local status, stdout = run({ "--bpffs", dir, "showMapData", "service" })
    assert.equals(0, status)
    assert.matches("^TYPE%s+MODE%s+ADDRESS", stdout)
    assert.matches("service%s+ClusterIP%s+10%.96%.0%.10%s+53%s+UDP", stdout)
    assert.matches("10%.244%.2%.10:53,10%.244%.3%.10:53", stdout)
  end)

  it("showMapData decodes each map into an aligned table: backends, node IPs, configure", function()
    local env = core_env.open(pending)
    local dir = programmed(env)
    local status, stdout = run({ "--bpffs", dir, "showMapData", "backend" })
    assert.equals(0, status)
    assert.matches("^map_backend %(%d+ entries%)\nTYPE%s+ADDRESS%s+PORT%s+PROTOCOL%s+SLOT%s+BACKEND%s+"
      .. "BACKEND%-PORT", stdout)
    status, stdout = run({ "--bpffs", dir, "showMapData", "nodeIp" })
    assert.equals(0, status)
    assert.matches("NODE%-ID", stdout)
    status, stdout = run({ "--bpffs", dir, "showMapData", "configure" })
    assert.equals(0, status)
    assert.matches("BPF%-LOG%-LEVEL", stdout)
  end)

  it("showMapData natRecord shows a TCP connection's record from its slot, a UDP socket's from the LRU", function()
    local env = core_env.open(pending)
    local _, dir = env:load()
    local function record_value(address, id)
      return ffi.new("struct nat_record_value", { frontend = abi.service_key(address, 80, "TCP", "service"),
        dialed_address = abi.ipv4_to_u32(address), service_id = id })
    end
    local slot = ffi.new("struct nat_record_tcp")
    slot.key.socket_cookie = 4101
    slot.key.address = abi.ipv4_to_u32("10.244.1.5")
    slot.key.port = abi.htons(8080)
    slot.value = record_value("10.96.0.20", 7)
    -- socket 4101's slot in the default 262,144; every other slot is empty
    bpftool_write.update(dir .. "/map_nat_record_tcp", ffi.new("__u32[1]", 4101), slot)
    bpftool_write.update(dir .. "/map_nat_record", ffi.new("struct nat_record_key", { socket_cookie = 4102,
      address = abi.ipv4_to_u32("10.244.1.6"), port = abi.htons(53) }), record_value("10.96.0.10", 3))

    local status, stdout, stderr = run({ "--bpffs", dir, "--json", "showMapData", "natRecord" })
    assert.equals(0, status, stderr)
    local maps = cjson.decode(stdout).maps
    assert.same({ { socketCookie = "4101", backend = "10.244.1.5", backendPort = 8080, type = "service",
      address = "10.96.0.20", port = 80, protocol = "TCP", dialed = "10.96.0.20", id = 7 } }, maps.map_nat_record_tcp)
    assert.equals(1, #maps.map_nat_record)
    assert.equals("4102", maps.map_nat_record[1].socketCookie)
    status, stdout = run({ "--bpffs", dir, "showMapData", "natRecord" })
    assert.equals(0, status)
    assert.matches("map_nat_record %(1 entries%)", stdout)
    assert.matches("map_nat_record_tcp %(1 entries%)", stdout)
  end)

  it("setMapData configure changes the running datapath's settings, one at a time, keeping the rest", function()
    local env = core_env.open(pending)
    local _, dir = env:load{ node_id = 7 }
    local status, stdout = run({ "--bpffs", dir, "setMapData", "configure", "bpfLogLevel", "verbose" })
    assert.equals(0, status)
    assert.matches("bpfLogLevel verbose", stdout, 1, true)
    status = run({ "--bpffs", dir, "setMapData", "configure", "redirectQosLimit", "25" })
    assert.equals(0, status)
    status = run({ "--bpffs", dir, "setMapData", "configure", "events", "failures" })
    assert.equals(0, status)
    local _, json = run({ "--bpffs", dir, "--json", "showMapData", "configure" })
    local configure = cjson.decode(json).maps.map_configure[1]
    assert.equals("verbose", configure.bpfLogLevel)
    assert.equals(25, configure.redirectQosLimit)
    assert.equals("failures", configure.events)
    assert.equals(7, configure.nodeId)
    assert.equals(abi.C.BALANCING_ABI_VERSION, configure.abiVersion)
  end)

  it("setMapData configure leaves a map_configure of another ABI version as it is, exit 1", function()
    local env = core_env.open(pending)
    local _, dir = env:load{ bpf_log_level = "info" }
    local key = ffi.new("struct configure_key")
    local other = core_env.decode("struct configure_value",
      assert(assert(env.core.open_maps(dir)).map_configure:lookup(key)))
    other.abi_version = abi.C.BALANCING_ABI_VERSION + 1
    bpftool_write.update(dir .. "/map_configure", key, other)

    local status, stdout, stderr = run({ "--bpffs", dir, "setMapData", "configure", "bpfLogLevel", "verbose" })
    assert.equals(1, status)
    assert.equals("", stdout)
    assert.matches("it holds ABI version " .. (abi.C.BALANCING_ABI_VERSION + 1), stderr, 1, true)
    local _, json = run({ "--bpffs", dir, "--json", "showMapData", "configure" })
    assert.equals("info", cjson.decode(json).maps.map_configure[1].bpfLogLevel)
  end)

  it("refuses a bad setting value with one line, exit 2, changing nothing", function()
    local env = core_env.open(pending)
    local _, dir = env:load()
    local status, _, stderr = run({ "--bpffs", dir, "setMapData", "configure", "bpfLogLevel", "loud" })
    assert.equals(2, status)
    assert.matches("not verbose, info, error or off", stderr, 1, true)
  end)

  it("says where it looked when nothing is pinned, exit 1", function()
    local env = core_env.open(pending)
    local dir = env:pin_dir()
    for _, args in ipairs({ { "showMapData", "all" }, { "setMapData", "configure", "events", "off" } }) do
      local status, stdout, stderr = run({ "--bpffs", dir, table.concat(args, " ") })
      assert.equals(1, status)
      assert.equals("", stdout)
      assert.matches("no maps pinned under " .. dir, stderr, 1, true)
    end
  end)
end)
