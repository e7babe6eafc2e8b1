-- Endpoint selection for one Service port (API.md "Service": endpoints,
-- backend port, traffic policies, topology), in the manner of kube-proxy's
-- CategorizeEndpoints.
local endpoints = require("balancing.reconcile.endpoints")
local fx = require("fixtures.services.builders")
local abi = require("balancing.abi")

local NODE = "node-1"

local function records(slices, port_name, protocol)
  return endpoints.from_slices(slices, port_name, protocol or "TCP", NODE)
end

-- "10.0.0.1:8080" texts, in order, with a "*" after local ones
local function texts(list)
  local out = {}
  for i, r in ipairs(list) do
    out[i] = r[endpoints.ADDRESS] .. ":" .. r[endpoints.PORT] .. (r[endpoints.IS_LOCAL] and "*" or "")
  end
  table.sort(out)
  return out
end

local function categorize(eps, zone)
  local cluster, local_ = endpoints.categorize(records({ fx.slice{ endpoints = eps } }), NODE, zone)
  return texts(cluster), texts(local_)
end

describe("endpoint selection", function()
  describe("backend port", function()
    it("takes the EndpointSlice port whose name equals the service port's name", function()
      local slice = fx.slice{
        ports = { { name = "http", port = 8080 }, { name = "metrics", port = 9090 } },
        endpoints = { { address = "10.0.0.1" } },
      }
      assert.same({ "10.0.0.1:9090" }, texts(records({ slice }, "metrics")))
      assert.same({ "10.0.0.1:8080" }, texts(records({ slice }, "http")))
    end)

    it("matches an unnamed service port to an unnamed slice port (absent, null and \"\" alike)", function()
      local slice = fx.slice{ ports = { { port = 8080 } }, endpoints = { { address = "10.0.0.1" } } }
      assert.same({ "10.0.0.1:8080" }, texts(records({ slice }, nil)))
      assert.same({ "10.0.0.1:8080" }, texts(records({ slice }, "")))
      local cjson_null = require("cjson").null
      assert.same({ "10.0.0.1:8080" }, texts(records({ slice }, cjson_null)))
    end)

    it("requires the protocol to match as well as the name", function()
      local slice = fx.slice{
        ports = { { name = "dns", port = 5353, protocol = "UDP" } },
        endpoints = { { address = "10.0.0.1" } },
      }
      assert.same({}, texts(records({ slice }, "dns", "TCP")))
      assert.same({ "10.0.0.1:5353" }, texts(records({ slice }, "dns", "UDP")))
    end)

    it("skips a slice that has no port for the service port", function()
      local slice = fx.slice{ ports = { { name = "other", port = 1 } }, endpoints = { { address = "10.0.0.1" } } }
      assert.same({}, texts(records({ slice }, "http")))
    end)

    it("takes each slice's own port, so pods of a named targetPort may differ", function()
      local a = fx.slice{ name = "web-a", ports = { { name = "http", port = 8080 } },
        endpoints = { { address = "10.0.0.1" } } }
      local b = fx.slice{ name = "web-b", ports = { { name = "http", port = 8081 } },
        endpoints = { { address = "10.0.0.2" } } }
      assert.same({ "10.0.0.1:8080", "10.0.0.2:8081" }, texts(records({ a, b }, "http")))
    end)
  end)

  describe("addresses", function()
    it("uses only IPv4 EndpointSlices", function()
      local v6 = fx.slice{ name = "web-v6", address_type = "IPv6", endpoints = { { address = "fd00::1" } } }
      local fqdn = fx.slice{ name = "web-fqdn", address_type = "FQDN", endpoints = { { address = "a.example" } } }
      local v4 = fx.slice{ name = "web-v4", endpoints = { { address = "10.0.0.1" } } }
      assert.same({ "10.0.0.1:8080" }, texts(records({ v6, fqdn, v4 }, nil)))
    end)

    it("gives one backend per address and port: two slices giving one address two ports are two backends", function()
      local late = fx.slice{ name = "web-b", ports = { { port = 9000 } }, endpoints = { { address = "10.0.0.1" } } }
      local early = fx.slice{ name = "web-a", ports = { { port = 8080 } }, endpoints = { { address = "10.0.0.1" } } }
      assert.same({ "10.0.0.1:8080", "10.0.0.1:9000" }, texts(records({ late, early }, nil)))
      assert.same({ "10.0.0.1:8080", "10.0.0.1:9000" }, texts(records({ early, late }, nil)))
    end)

    it("keeps an address:port found in two slices once: the one in the slice whose name sorts first", function()
      local late = fx.slice{ name = "web-b", endpoints = { { address = "10.0.0.1", node = NODE } } }
      local early = fx.slice{ name = "web-a", endpoints = { { address = "10.0.0.1" } } }
      assert.same({ "10.0.0.1:8080" }, texts(records({ late, early }, nil)))
    end)

    it("for the same address:port, a ready entry wins over a terminating one (a reused pod IP)", function()
      -- the old pod terminates in one slice while the new pod with its IP
      -- is ready in another, whichever slice sorts first
      for _, names in ipairs({ { "web-a", "web-b" }, { "web-b", "web-a" } }) do
        local old = fx.slice{ name = names[1], endpoints = {
          { address = "10.0.0.1", ready = false, serving = true, terminating = true, node = "node-2" } } }
        local new = fx.slice{ name = names[2], endpoints = { { address = "10.0.0.1", ready = true, node = NODE } } }
        local list = records({ old, new }, nil)
        assert.equals(1, #list)
        assert.is_true(list[1][endpoints.READY])
        assert.is_true(list[1][endpoints.IS_LOCAL])
        local cluster = endpoints.categorize(list, NODE, nil)
        assert.same({ "10.0.0.1:8080*" }, texts(cluster))
      end
    end)

    it("for the same address:port among many endpoints, a ready entry wins over a terminating one", function()
      local eps = {}
      for i = 1, 20 do
        eps[i] = { address = "10.0.0." .. i, ready = false, serving = true, terminating = true }
      end
      eps[21] = { address = "10.0.0.20", ready = true }
      local list = records({ fx.slice{ endpoints = eps } }, nil)
      assert.equals(20, #list)
      local cluster = endpoints.categorize(list, NODE, nil)
      assert.same({ "10.0.0.20:8080" }, texts(cluster))
    end)

    it("keeps a repeated address once among many endpoints, as among few", function()
      local eps = {}
      for i = 1, 40 do
        eps[i] = { address = "10.0.0." .. ((i - 1) % 25 + 1) } -- 10.0.0.1 .. 25, then 1 .. 15 again
      end
      local list = texts(records({ fx.slice{ endpoints = eps } }, nil))
      assert.equals(25, #list)
      local seen = {}
      for _, text in ipairs(list) do
        assert.is_nil(seen[text])
        seen[text] = true
      end
    end)

    it("skips an endpoint whose address is not IPv4 text", function()
      local slice = fx.slice{ endpoints = { { address = "1.2.3.256" }, { address = "10.0.0.1" }, { address = "a.b" } } }
      assert.same({ "10.0.0.1:8080" }, texts(records({ slice }, nil)))
    end)

    it("reads leading zeros as decimal, as kube-proxy does (10.244.0.041 is 10.244.0.41)", function()
      local list = records({ fx.slice{ endpoints = { { address = "010.244.000.041" } } } }, nil)
      assert.equals(1, #list)
      assert.equals(abi.ipv4_order("10.244.0.41"), list[1][endpoints.ORDER])
      -- the same address written two ways is one backend
      list = records({ fx.slice{ endpoints = { { address = "10.244.0.041" }, { address = "10.244.0.41" } } } }, nil)
      assert.equals(1, #list)
    end)

    it("marks an endpoint local when its nodeName is this node", function()
      local slice = fx.slice{ endpoints = {
        { address = "10.0.0.1", node = NODE }, { address = "10.0.0.2", node = "node-2" }, { address = "10.0.0.3" },
      } }
      assert.same({ "10.0.0.1:8080*", "10.0.0.2:8080", "10.0.0.3:8080" }, texts(records({ slice }, nil)))
    end)
  end)

  describe("ready, serving and terminating (cluster policy)", function()
    it("uses endpoints whose ready condition is true or unset", function()
      local cluster = categorize{
        { address = "10.0.0.1", ready = true },
        { address = "10.0.0.2" },
        { address = "10.0.0.3", ready = false },
      }
      assert.same({ "10.0.0.1:8080", "10.0.0.2:8080" }, cluster)
    end)

    it("ignores terminating endpoints while one endpoint is ready", function()
      local cluster = categorize{
        { address = "10.0.0.1", ready = true },
        { address = "10.0.0.2", ready = false, serving = true, terminating = true },
      }
      assert.same({ "10.0.0.1:8080" }, cluster)
    end)

    it("uses serving+terminating endpoints when none is ready", function()
      local cluster = categorize{
        { address = "10.0.0.1", ready = false, serving = true, terminating = true },
        { address = "10.0.0.2", ready = false, serving = false, terminating = true },
        { address = "10.0.0.3", ready = false, serving = true, terminating = false },
      }
      assert.same({ "10.0.0.1:8080" }, cluster)
    end)

    it("never uses an endpoint that is neither ready nor serving and terminating", function()
      local cluster = categorize{
        { address = "10.0.0.1", ready = false },
        { address = "10.0.0.2", ready = false, serving = false, terminating = true },
        { address = "10.0.0.3", ready = false, serving = true },
      }
      assert.same({}, cluster)
    end)
  end)

  describe("local endpoints (Local policy)", function()
    it("uses this node's ready endpoints", function()
      local _, local_ = categorize{
        { address = "10.0.0.1", node = NODE },
        { address = "10.0.0.2", node = NODE, ready = false },
        { address = "10.0.0.3", node = "node-2" },
      }
      assert.same({ "10.0.0.1:8080*" }, local_)
    end)

    it("falls back to this node's serving+terminating endpoints when none local is ready, even with ready remote ones",
      function()
      local cluster, local_ = categorize{
        { address = "10.0.0.1", node = NODE, ready = false, serving = true, terminating = true },
        { address = "10.0.0.2", node = "node-2" },
      }
      assert.same({ "10.0.0.1:8080*" }, local_)
      assert.same({ "10.0.0.2:8080" }, cluster)
    end)

    it("has no local endpoint when this node runs none usable", function()
      local _, local_ = categorize{
        { address = "10.0.0.1", node = NODE, ready = false },
        { address = "10.0.0.2", node = "node-2" },
      }
      assert.same({}, local_)
    end)
  end)

  describe("topology hints", function()
    it("uses only the endpoints hinted for this zone when every endpoint has zone hints", function()
      local cluster = categorize({
        { address = "10.0.0.1", zones = { "zone-a" } },
        { address = "10.0.0.2", zones = { "zone-b" } },
        { address = "10.0.0.3", zones = { "zone-a", "zone-b" } },
      }, "zone-a")
      assert.same({ "10.0.0.1:8080", "10.0.0.3:8080" }, cluster)
    end)

    it("uses all endpoints when one ready endpoint has no hints", function()
      local cluster = categorize({
        { address = "10.0.0.1", zones = { "zone-a" } },
        { address = "10.0.0.2" },
      }, "zone-a")
      assert.same({ "10.0.0.1:8080", "10.0.0.2:8080" }, cluster)
    end)

    it("uses all endpoints when no hint is for this node's zone", function()
      local cluster = categorize({
        { address = "10.0.0.1", zones = { "zone-b" } },
        { address = "10.0.0.2", zones = { "zone-c" } },
      }, "zone-a")
      assert.same({ "10.0.0.1:8080", "10.0.0.2:8080" }, cluster)
    end)

    it("uses all endpoints when this node has no zone", function()
      local cluster = categorize({
        { address = "10.0.0.1", zones = { "zone-a" } },
        { address = "10.0.0.2", zones = { "zone-b" } },
      }, nil)
      assert.same({ "10.0.0.1:8080", "10.0.0.2:8080" }, cluster)
    end)

    it("judges hints over the ready endpoints only", function()
      local cluster = categorize({
        { address = "10.0.0.1", zones = { "zone-a" } },
        { address = "10.0.0.2", zones = { "zone-b" } },
        { address = "10.0.0.3", ready = false },
      }, "zone-a")
      assert.same({ "10.0.0.1:8080" }, cluster)
    end)

    it("PreferSameNode: uses only the endpoints hinted for this node when every ready one has node hints", function()
      local cluster = categorize({
        { address = "10.0.0.1", node = NODE, for_nodes = { NODE }, zones = { "zone-a" } },
        { address = "10.0.0.2", node = "node-2", for_nodes = { "node-2" }, zones = { "zone-a" } },
        { address = "10.0.0.3", node = "node-3", for_nodes = { "node-3" }, zones = { "zone-b" } },
      }, "zone-a")
      assert.same({ "10.0.0.1:8080*" }, cluster)
    end)

    it("PreferSameNode: node hints come before zone hints, which apply when none names this node", function()
      local cluster = categorize({
        { address = "10.0.0.2", node = "node-2", for_nodes = { "node-2" }, zones = { "zone-a" } },
        { address = "10.0.0.3", node = "node-3", for_nodes = { "node-3" }, zones = { "zone-b" } },
      }, "zone-a")
      assert.same({ "10.0.0.2:8080" }, cluster)
    end)

    it("PreferSameNode: ignores node hints unless every ready endpoint has them", function()
      local cluster = categorize({
        { address = "10.0.0.1", node = NODE, for_nodes = { NODE } },
        { address = "10.0.0.2", node = "node-2" },
      }, "zone-a")
      assert.same({ "10.0.0.1:8080*", "10.0.0.2:8080" }, cluster)
    end)

    it("does not narrow the local endpoints", function()
      local _, local_ = categorize({
        { address = "10.0.0.1", node = NODE, zones = { "zone-b" } },
        { address = "10.0.0.2", node = "node-2", zones = { "zone-a" } },
      }, "zone-a")
      assert.same({ "10.0.0.1:8080*" }, local_)
    end)
  end)

  describe("slot order", function()
    it("puts local endpoints first, each group sorted by address then port", function()
      local slice = fx.slice{ endpoints = {
        { address = "10.0.0.20" }, { address = "10.0.0.3", node = NODE },
        { address = "10.0.0.100" }, { address = "10.0.0.9", node = NODE }, { address = "10.0.0.4" },
      } }
      local ordered, local_count = endpoints.slot_order(records({ slice }, nil))
      local out = {}
      for i, r in ipairs(ordered) do
        out[i] = r[endpoints.ADDRESS]
      end
      assert.same({ "10.0.0.3", "10.0.0.9", "10.0.0.4", "10.0.0.20", "10.0.0.100" }, out)
      assert.equals(2, local_count)
    end)

    it("gives the same order for many endpoints as for few", function()
      local eps = {}
      for i = 1, 40 do
        local n = (i * 17) % 40 + 1 -- 1 .. 40, shuffled
        eps[i] = { address = "10.0." .. (n % 3) .. "." .. n, node = n % 5 == 0 and NODE or "node-2" }
      end
      local ordered, local_count = endpoints.slot_order(records({ fx.slice{ endpoints = eps } }, nil))
      assert.equals(40, #ordered)
      assert.equals(8, local_count)
      for i = 2, #ordered do
        local a, b = ordered[i - 1], ordered[i]
        if a[endpoints.IS_LOCAL] == b[endpoints.IS_LOCAL] then
          assert.is_true(a[endpoints.ORDER] < b[endpoints.ORDER])
        else
          assert.is_true(a[endpoints.IS_LOCAL])
        end
      end
    end)
  end)
end)
