-- balancing.packed: the store's Services and EndpointSlices as text. What
-- unpack gives back must equal what pack was given, whatever the slice
-- holds; only the usual endpoints are packed into lines.
local cjson = require("cjson")
local packed = require("balancing.packed")

local function slice(endpoints)
  return { kind = "EndpointSlice", apiVersion = "discovery.k8s.io/v1", addressType = "IPv4",
    metadata = { namespace = "default", name = "web-abc", labels = { ["kubernetes.io/service-name"] = "web" } },
    ports = { { name = "http", port = 8080, protocol = "TCP" } }, endpoints = endpoints }
end

local function round_trip(obj)
  local text = assert(packed.pack(obj))
  return packed.unpack(text), text
end

describe("balancing.packed", function()
  it("gives back a Service as it was", function()
    local service = { kind = "Service", apiVersion = "v1",
      metadata = { namespace = "default", name = "web", uid = "u-1", labels = { ["app.kubernetes.io/name"] = "web" },
        creationTimestamp = "2026-01-01T00:00:00Z" },
      spec = { clusterIP = "10.96.0.1", clusterIPs = { "10.96.0.1" }, ports = { { port = 80, targetPort = "http" } },
        sessionAffinity = "ClientIP", sessionAffinityConfig = { clientIP = { timeoutSeconds = 10800 } } },
      status = { loadBalancer = { ingress = { { ip = "192.0.2.1" } } } } }
    assert.same(service, (round_trip(service)))
  end)

  it("packs the usual endpoints as lines, and gives them back as they were", function()
    local endpoints = {
      { addresses = { "10.1.0.1" }, conditions = { ready = true, serving = true, terminating = false },
        nodeName = "node-1", zone = "a" },
      { addresses = { "10.1.0.2", "10.1.0.3" }, conditions = { ready = false }, nodeName = "node-2" },
      { addresses = { "10.1.0.4" }, zone = "b" },
      { addresses = { "10.1.0.5" }, conditions = {} },
    }
    local obj = slice(endpoints)
    local back, text = round_trip(obj)
    assert.same(slice(endpoints), back)
    assert.is_string(cjson.decode(text).endpoints) -- packed as lines
    assert.same(endpoints, obj.endpoints) -- pack leaves its argument as it was
  end)

  it("keeps as JSON the endpoints it cannot write as lines, and gives them back as they were", function()
    for _, case in ipairs({
      { { addresses = { "10.1.0.1" }, hints = { forZones = { { name = "a" } } } } },
      { { addresses = { "10.1.0.1" }, nodeName = cjson.null } },
      { { addresses = { "10.1.0.1" }, conditions = { ready = "yes" } } },
      { { addresses = { "10.1.0.1" }, conditions = { ready = true, other = true } } },
      { { addresses = { "10.1.0.1" }, nodeName = "" } },
      { { addresses = { "10.1.0.1" }, zone = "a\tb" } },
      { { addresses = { "10.1,0.1" } } },
      { { addresses = {} } },
      { { addresses = { "10.1.0.1" }, targetRef = { kind = "Pod", name = "p" } } },
      { "not an endpoint" },
    }) do
      local back, text = round_trip(slice(case))
      assert.same(slice(case), back)
      assert.is_table(cjson.decode(text).endpoints, cjson.encode(case))
    end
  end)

  it("gives back random endpoints as they were", function()
    math.randomseed(7)
    local conditions = { nil, { ready = true }, { ready = false, serving = true, terminating = true }, {} }
    for _ = 1, 300 do
      local endpoints = {}
      for i = 1, math.random(1, 12) do
        local addresses = {}
        for j = 1, math.random(1, 3) do
          addresses[j] = string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255), math.random(0, 255))
        end
        endpoints[i] = { addresses = addresses, conditions = conditions[math.random(1, 4)],
          nodeName = math.random() < 0.8 and ("node-" .. math.random(1, 50)) or nil,
          zone = math.random() < 0.5 and ("zone-" .. math.random(1, 3)) or nil }
      end
      assert.same(slice(endpoints), (round_trip(slice(endpoints))))
    end
  end)

  it("refuses what it could not give back: a slice whose endpoints are text, a table JSON cannot hold", function()
    assert.is_nil(packed.pack(slice("10.1.0.1\tA\t\t")))
    assert.is_nil(packed.pack({ kind = "Service", metadata = { name = "x", f = function() end } }))
    assert.is_nil(packed.pack("text"))
  end)
end)
