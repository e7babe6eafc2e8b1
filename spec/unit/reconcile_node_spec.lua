-- The node context and the node tables (API.md "Node", "Annotations").
local node = require("balancing.reconcile.node")
local Store = require("balancing.store")
local fx = require("fixtures.services.builders")
local decode = require("fixtures.services.decode")

local function store_of(nodes)
  local store = Store.new{ node_name = "node-1" }
  for _, obj in ipairs(nodes) do
    assert(store:upsert(obj))
  end
  return store
end

local function reasons(rejections)
  local out = {}
  for i, r in ipairs(rejections) do
    assert.equals("Node", r.kind)
    out[i] = r.name .. ": " .. r.reason
  end
  return out
end

describe("reconcile.node", function()
  describe("context", function()
    local store = store_of{
      fx.node{ name = "node-1", zone = "zone-a", node_id = 11, labels = { role = "edge" },
        addresses = { "192.168.0.1", { type = "ExternalIP", address = "203.0.113.1" },
          { type = "InternalIP", address = "fd00::1" } } },
    }

    it("names this node and says whether the agent runs outside the cluster", function()
      local ctx = node.context(store, "node-1", false)
      assert.equals("node-1", ctx.node_name)
      assert.is_false(ctx.out_cluster)
      assert.is_true(node.context(store, "node-1", true).out_cluster)
    end)

    it("carries this node's labels and its zone from topology.kubernetes.io/zone", function()
      local ctx = node.context(store, "node-1", false)
      assert.equals("edge", ctx.labels.role)
      assert.equals("zone-a", ctx.zone)
    end)

    it("carries the set of this node's IPv4 status.addresses", function()
      local ctx = node.context(store, "node-1", false)
      assert.same({ ["192.168.0.1"] = true, ["203.0.113.1"] = true }, ctx.addresses)
    end)

    it("takes the node ID from the balancing.elf.io/nodeId annotation", function()
      assert.equals(11, node.context(store, "node-1", false).node_id)
    end)

    it("has node ID 0 when the annotation is missing or invalid", function()
      for _, value in ipairs({ false, "0", "-3", "abc", "4294967296", "12.5" }) do
        local s = store_of{ fx.node{ name = "node-1", node_id = value or nil } }
        assert.equals(0, node.context(s, "node-1", false).node_id, tostring(value))
      end
    end)

    it("is empty for a node the store does not know (an agent outside the cluster)", function()
      local ctx = node.context(store, "edge-host", true)
      assert.same({ node_name = "edge-host", out_cluster = true, labels = {}, addresses = {}, node_id = 0 }, ctx)
    end)
  end)

  describe("map_node_ip", function()
    it("holds every IPv4 address of every Node with that node's ID", function()
      local store = store_of{
        fx.node{ name = "node-1", node_id = 11, addresses = { "192.168.0.1",
          { type = "ExternalIP", address = "203.0.113.1" }, { type = "InternalIP", address = "fd00::1" } } },
        fx.node{ name = "node-2", node_id = 12, internal_ip = "192.168.0.2" },
      }
      local entries = node.desired(store, node.context(store, "node-1", false))
      assert.equals("node", entries.owner)
      assert.same({ ["192.168.0.1"] = 11, ["203.0.113.1"] = 11, ["192.168.0.2"] = 12 }, (decode.node_ips(entries)))
    end)

    it("lists a node without a valid ID with ID 0, so its NodePorts still resolve", function()
      local store = store_of{ fx.node{ name = "node-3", internal_ip = "192.168.0.3" } }
      local entries = node.desired(store, node.context(store, "node-1", false))
      assert.same({ ["192.168.0.3"] = 0 }, (decode.node_ips(entries)))
    end)

    it("gives an address claimed by two nodes to the node whose name sorts first", function()
      local store = store_of{
        fx.node{ name = "node-b", node_id = 22, internal_ip = "192.168.0.9" },
        fx.node{ name = "node-a", node_id = 21, internal_ip = "192.168.0.9" },
      }
      local entries = node.desired(store, node.context(store, "node-1", false))
      assert.same({ ["192.168.0.9"] = 21 }, (decode.node_ips(entries)))
      assert.equals(1, #entries.node_ips)
    end)

    it("lists the addresses in address order", function()
      local store = store_of{
        fx.node{ name = "node-1", node_id = 1, addresses = { "192.168.0.10", "192.168.0.9", "10.0.0.1" } },
      }
      local _, order = decode.node_ips(node.desired(store, node.context(store, "node-1", false)))
      assert.same({ "10.0.0.1", "192.168.0.9", "192.168.0.10" }, order)
    end)
  end)

  describe("map_node_proxy_ip", function()
    it("maps the node ID to the nodeProxyIpv4 annotation", function()
      local store = store_of{ fx.node{ name = "node-1", node_id = 11, internal_ip = "192.168.0.1",
        proxy_ip = "172.16.0.1" } }
      local entries, rejections = node.desired(store, node.context(store, "node-1", false))
      assert.same({ [11] = "172.16.0.1" }, (decode.node_proxy_ips(entries)))
      assert.same({}, rejections)
    end)

    it("maps the node ID to the node's first InternalIP when the annotation is missing", function()
      local store = store_of{ fx.node{ name = "node-1", node_id = 11,
        addresses = { { type = "ExternalIP", address = "203.0.113.1" }, "192.168.0.1", "192.168.0.2" } } }
      local entries = node.desired(store, node.context(store, "node-1", false))
      assert.same({ [11] = "192.168.0.1" }, (decode.node_proxy_ips(entries)))
    end)

    it("skips a node without the nodeId annotation and does not reject it: its agent writes the annotation",
      function()
        local store = store_of{
          fx.node{ name = "node-1", internal_ip = "192.168.0.1" },
          fx.node{ name = "node-2", internal_ip = "192.168.0.2", proxy_ip = "172.16.0.2" },
          fx.node{ name = "node-3", node_id = 13, internal_ip = "192.168.0.3" },
        }
        local entries, rejections = node.desired(store, node.context(store, "node-1", false))
        assert.same({ [13] = "192.168.0.3" }, (decode.node_proxy_ips(entries)))
        assert.same({ ["192.168.0.1"] = 0, ["192.168.0.2"] = 0, ["192.168.0.3"] = 13 }, (decode.node_ips(entries)))
        assert.same({}, rejections)
      end)

    it("mentions a node without an ID as a debug notice only (reconcile itself never logs)", function()
      local log = require("balancing.log")
      local lines = {}
      local level = log.level()
      log.set_sink(function(line) lines[#lines + 1] = line end)
      local store = store_of{ fx.node{ name = "node-2", internal_ip = "192.168.0.2" } }
      local ok, result = pcall(function()
        assert(log.set_level("debug"))
        return { node.desired(store, node.context(store, "node-1", false)) }
      end)
      log.set_sink(nil)
      log.set_level(level)
      assert(ok, result)
      assert.same({}, lines)
      local rejections, notices = result[2], result[3]
      assert.same({}, rejections)
      assert.equals(1, #notices)
      assert.equals("debug", notices[1].level)
      assert.equals("node-2", notices[1].fields.node)
    end)

    it("rejects nothing on a fresh cluster where no node has an ID yet", function()
      local store = store_of{
        fx.node{ name = "node-1", internal_ip = "192.168.0.1" },
        fx.node{ name = "node-2", internal_ip = "192.168.0.2" },
      }
      local entries, rejections = node.desired(store, node.context(store, "node-1", false))
      assert.same({}, rejections)
      assert.same({}, entries.node_proxy_ips)
      assert.same({ ["192.168.0.1"] = 0, ["192.168.0.2"] = 0 }, (decode.node_ips(entries)))
    end)

    it("skips a node whose ID is not a non-zero decimal uint32, with a rejection naming the node and the annotation",
      function()
        local store = store_of{
          fx.node{ name = "node-1", node_id = "0", internal_ip = "192.168.0.1" },
          fx.node{ name = "node-2", node_id = "abc", internal_ip = "192.168.0.2" },
          fx.node{ name = "node-3", node_id = 13, internal_ip = "192.168.0.3" },
          fx.node{ name = "node-4", node_id = "4294967296", internal_ip = "192.168.0.4" },
          fx.node{ name = "node-5", node_id = "", internal_ip = "192.168.0.5" },
        }
        local entries, rejections = node.desired(store, node.context(store, "node-1", false))
        assert.same({ [13] = "192.168.0.3" }, (decode.node_proxy_ips(entries)))
        assert.same({
          'node-1: metadata.annotations[balancing.elf.io/nodeId]: "0" is not a non-zero decimal uint32',
          'node-2: metadata.annotations[balancing.elf.io/nodeId]: "abc" is not a non-zero decimal uint32',
          'node-4: metadata.annotations[balancing.elf.io/nodeId]: "4294967296" is not a non-zero decimal uint32',
          'node-5: metadata.annotations[balancing.elf.io/nodeId]: "" is not a non-zero decimal uint32',
        }, reasons(rejections))
      end)

    it("falls back to the first InternalIP when nodeProxyIpv4 is not an IPv4 address, with a rejection", function()
      local store = store_of{ fx.node{ name = "node-1", node_id = 11, internal_ip = "192.168.0.1",
        proxy_ip = "172.16.0.300" } }
      local entries, rejections = node.desired(store, node.context(store, "node-1", false))
      assert.same({ [11] = "192.168.0.1" }, (decode.node_proxy_ips(entries)))
      assert.equals(1, #rejections)
      assert.matches("node-1: metadata.annotations[balancing.elf.io/nodeProxyIpv4]: \"172.16.0.300\"",
        reasons(rejections)[1], 1, true)
    end)

    it("gives an ID claimed by two nodes to the node whose name sorts first, and reports the other", function()
      local store = store_of{
        fx.node{ name = "node-b", node_id = 7, internal_ip = "192.168.0.2" },
        fx.node{ name = "node-a", node_id = 7, internal_ip = "192.168.0.1" },
      }
      local entries, rejections = node.desired(store, node.context(store, "node-1", false))
      assert.same({ [7] = "192.168.0.1" }, (decode.node_proxy_ips(entries)))
      assert.same({ ["192.168.0.1"] = 7, ["192.168.0.2"] = 0 }, (decode.node_ips(entries)))
      assert.same({ "node-b: metadata.annotations[balancing.elf.io/nodeId]: 7 is already the ID of node node-a" },
        reasons(rejections))
    end)

    it("lists the IDs in order", function()
      local store = store_of{
        fx.node{ name = "node-a", node_id = 30, internal_ip = "192.168.0.1" },
        fx.node{ name = "node-b", node_id = 4, internal_ip = "192.168.0.2" },
      }
      local _, order = decode.node_proxy_ips(node.desired(store, node.context(store, "node-1", false)))
      assert.same({ 4, 30 }, order)
    end)
  end)

  describe("helpers for other modules", function()
    it("first_internal_ip is the first IPv4 InternalIP, or nil", function()
      assert.equals("192.168.0.2", node.first_internal_ip(fx.node{ name = "n", addresses = {
        { type = "ExternalIP", address = "203.0.113.1" }, { type = "InternalIP", address = "fd00::1" },
        "192.168.0.2", "192.168.0.3" } }))
      assert.is_nil(node.first_internal_ip(fx.node{ name = "n" }))
    end)

    it("proxy_ip is the annotation, else the first InternalIP", function()
      assert.equals("172.16.0.1", node.proxy_ip(fx.node{ name = "n", internal_ip = "192.168.0.1",
        proxy_ip = "172.16.0.1" }))
      assert.equals("192.168.0.1", node.proxy_ip(fx.node{ name = "n", internal_ip = "192.168.0.1" }))
      local ip, problem = node.proxy_ip(fx.node{ name = "n", internal_ip = "192.168.0.1", proxy_ip = "x" })
      assert.equals("192.168.0.1", ip)
      assert.matches("nodeProxyIpv4", problem, 1, true)
    end)
  end)

  describe("the node owner", function()
    it("has the owner key node and no frontends", function()
      local store = store_of{}
      local entries = node.desired(store, node.context(store, "node-1", false))
      assert.same({ owner = "node", frontends = {}, node_ips = {}, node_proxy_ips = {} }, entries)
    end)
  end)
end)
