-- A Service becomes map entries (API.md "Service", CONTRACTS.md "The frontend
-- view"): one spec per rule, against the real store.
local service = require("balancing.reconcile.service")
local node = require("balancing.reconcile.node")
local Store = require("balancing.store")
local log = require("balancing.log")
local fx = require("fixtures.services.builders")
local decode = require("fixtures.services.decode")

local NODE = "node-1"

-- The store holding objects, and this node's context (node-1 in zone-a).
local function world(objects, opts)
  opts = opts or {}
  local store = Store.new{ node_name = opts.node_name or NODE, service_proxy_name = opts.service_proxy_name }
  assert(store:upsert(fx.node{ name = NODE, zone = "zone-a", internal_ip = "192.168.0.1", node_id = 11 }))
  assert(store:upsert(fx.node{ name = "node-2", zone = "zone-b", internal_ip = "192.168.0.2", node_id = 12 }))
  for _, obj in ipairs(objects) do
    assert(store:upsert(obj))
  end
  return store, node.context(store, opts.node_name or NODE, opts.out_cluster)
end

local function desired(objects, opts)
  opts = opts or {}
  local store, ctx = world(objects, opts)
  local entries, rejections, notices = service.desired(store, ctx, opts.namespace or "default", opts.name or "web")
  return entries, rejections, store, notices
end

-- One ready endpoint on this node and one on node-2, serving port 8080.
local function two_endpoints(extra)
  local opts = { endpoints = {
    { address = "10.244.1.5", node = NODE },
    { address = "10.244.2.7", node = "node-2" },
  } }
  for k, v in pairs(extra or {}) do
    opts[k] = v
  end
  return fx.slice(opts)
end

local function reasons(rejections)
  local out = {}
  for i, r in ipairs(rejections) do
    assert.equals("Service", r.kind)
    out[i] = r.name .. ": " .. r.reason
  end
  return out
end

describe("reconcile.service", function()
  describe("frontends", function()
    it("programs one frontend per IPv4 ClusterIP and service port", function()
      local entries = desired{
        fx.service{ cluster_ips = { "10.96.0.10", "fd00::10" },
          ports = { { name = "http", port = 80 }, { name = "https", port = 443 } } },
      }
      assert.same({ "10.96.0.10:80/TCP ClusterIP", "10.96.0.10:443/TCP ClusterIP" }, decode.keys(entries))
    end)

    it("skips IPv6 ClusterIPs without a rejection (this version programs IPv4)", function()
      local entries, rejections = desired{ fx.service{ cluster_ips = { "fd00::10", "10.96.0.10" } } }
      assert.same({ "10.96.0.10:80/TCP ClusterIP" }, decode.keys(entries))
      assert.same({}, rejections)
    end)

    it("falls back to spec.clusterIP when spec.clusterIPs is absent", function()
      local svc = fx.service{}
      svc.spec.clusterIP = "10.96.0.11"
      local entries = desired{ svc }
      assert.same({ "10.96.0.11:80/TCP ClusterIP" }, decode.keys(entries))
    end)

    it("programs no ClusterIP frontend for a headless Service (clusterIP None)", function()
      local entries, rejections = desired{ fx.service{ cluster_ip = "None" }, two_endpoints() }
      assert.same({}, decode.keys(entries))
      assert.same({}, rejections)
    end)

    it("programs a frontend per load balancer ingress IP of a LoadBalancer Service", function()
      local entries = desired{
        fx.service{ type = "LoadBalancer", cluster_ip = "10.96.0.10",
          ports = { { port = 80 } },
          ingress = { "203.0.113.10", { hostname = "lb.example.com" }, "203.0.113.11" } },
      }
      assert.same({
        "10.96.0.10:80/TCP ClusterIP", "203.0.113.10:80/TCP LoadBalancer", "203.0.113.11:80/TCP LoadBalancer",
      }, decode.keys(entries))
    end)

    it("ignores load balancer ingress IPs of a Service that is not of type LoadBalancer", function()
      local entries = desired{ fx.service{ cluster_ip = "10.96.0.10", ingress = { "203.0.113.10" } } }
      assert.same({ "10.96.0.10:80/TCP ClusterIP" }, decode.keys(entries))
    end)

    it("programs a frontend per external IP", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10", external_ips = { "198.51.100.7", "198.51.100.8" } },
      }
      assert.same({
        "10.96.0.10:80/TCP ClusterIP", "198.51.100.7:80/TCP ExternalIP", "198.51.100.8:80/TCP ExternalIP",
      }, decode.keys(entries))
    end)

    it("programs the NodePort of a NodePort Service as address * (any node IP)", function()
      local entries = desired{
        fx.service{ type = "NodePort", cluster_ip = "10.96.0.10", ports = { { port = 80, node_port = 30080 } } },
      }
      assert.same({ "*:30080/TCP NodePort", "10.96.0.10:80/TCP ClusterIP" }, decode.keys(entries))
      assert.equals(0, entries.frontends[1].key.address)
    end)

    it("programs the NodePort of a LoadBalancer Service too", function()
      local entries = desired{
        fx.service{ type = "LoadBalancer", cluster_ip = "10.96.0.10",
          ports = { { port = 80, node_port = 30080 } }, ingress = { "203.0.113.10" } },
      }
      assert.same({ "*:30080/TCP NodePort", "10.96.0.10:80/TCP ClusterIP", "203.0.113.10:80/TCP LoadBalancer" },
        decode.keys(entries))
    end)

    it("programs no NodePort frontend when the port has no nodePort (allocateLoadBalancerNodePorts false)", function()
      local entries = desired{
        fx.service{ type = "LoadBalancer", cluster_ip = "10.96.0.10", ports = { { port = 80 } } },
      }
      assert.same({ "10.96.0.10:80/TCP ClusterIP" }, decode.keys(entries))
    end)

    it("programs no NodePort frontend for a ClusterIP Service", function()
      local entries = desired{ fx.service{ cluster_ip = "10.96.0.10", ports = { { port = 80, node_port = 30080 } } } }
      assert.same({ "10.96.0.10:80/TCP ClusterIP" }, decode.keys(entries))
    end)

    it("programs TCP and UDP ports and skips SCTP with one notice naming the Service and port (no log line)", function()
      local lines = {}
      log.set_sink(function(line) lines[#lines + 1] = line end)
      local entries, _, _, notices = desired{
        fx.service{ cluster_ip = "10.96.0.10", ports = {
          { name = "dns", port = 53, protocol = "UDP" },
          { name = "dns-tcp", port = 53, protocol = "TCP" },
          { name = "sig", port = 3868, protocol = "SCTP" },
        } },
      }
      log.set_sink(nil)
      assert.same({ "10.96.0.10:53/TCP ClusterIP", "10.96.0.10:53/UDP ClusterIP" }, decode.keys(entries))
      assert.same({}, lines) -- reconcile is pure: the driver logs its notices
      assert.equals(1, #notices)
      assert.same({ service = "default/web", port = "sig", protocol = "SCTP" }, notices[1].fields)
      assert.matches("protocol not supported", notices[1].message, 1, true)
    end)

    it("gives an ExternalName Service no entries", function()
      local entries, rejections = desired{
        fx.service{ type = "ExternalName", external_name = "db.example.com", cluster_ip = nil },
      }
      assert.equals("service/default/web", entries.owner)
      assert.same({}, entries.frontends)
      assert.same({}, rejections)
    end)

    it("gives a deleted Service its owner key and no frontends", function()
      local store, ctx = world{ fx.service{ cluster_ip = "10.96.0.10" }, two_endpoints() }
      assert.equals(1, #service.desired(store, ctx, "default", "web").frontends)
      store:delete(fx.service{ cluster_ip = "10.96.0.10" })
      local entries, rejections = service.desired(store, ctx, "default", "web")
      assert.equals("service/default/web", entries.owner)
      assert.same({}, entries.frontends)
      assert.same({}, rejections)
    end)

    it("gives a Service that never existed its owner key and no frontends", function()
      local entries = desired({}, { namespace = "prod", name = "missing" })
      assert.equals("service/prod/missing", entries.owner)
      assert.same({}, entries.frontends)
    end)

    it("marks every frontend nat_type service with the mode of its kind and the Service's ID", function()
      local svc = fx.service{ type = "LoadBalancer", cluster_ip = "10.96.0.10", external_ips = { "198.51.100.7" },
        ports = { { port = 80, node_port = 30080 } }, ingress = { "203.0.113.10" } }
      local entries, _, store = desired{ svc }
      local id = store.ids:service_id(store:get("Service", "default", "web"))
      local seen = {}
      for _, fe in ipairs(decode.frontends(entries)) do
        assert.equals("service", fe.type)
        assert.equals(id, fe.id)
        seen[#seen + 1] = fe.mode
      end
      assert.same({ "NodePort", "ClusterIP", "ExternalIP", "LoadBalancer" }, seen)
    end)

    it("sorts frontends by address, port and protocol", function()
      local entries = desired{
        fx.service{ type = "NodePort", cluster_ip = "10.96.0.10", external_ips = { "9.9.9.9" }, ports = {
          { name = "b", port = 8443, node_port = 30002 },
          { name = "a", port = 53, protocol = "UDP", node_port = 30001 },
          { name = "c", port = 53, protocol = "TCP", node_port = 30001 },
        } },
      }
      assert.same({
        "*:30001/TCP NodePort", "*:30001/UDP NodePort", "*:30002/TCP NodePort",
        "9.9.9.9:53/TCP ExternalIP", "9.9.9.9:53/UDP ExternalIP", "9.9.9.9:8443/TCP ExternalIP",
        "10.96.0.10:53/TCP ClusterIP", "10.96.0.10:53/UDP ClusterIP", "10.96.0.10:8443/TCP ClusterIP",
      }, decode.keys(entries))
    end)
  end)

  describe("backend port", function()
    it("numeric targetPort resolves through the EndpointSlice port of the same name", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10", ports = {
          { name = "http", port = 80, target_port = 8080 }, { name = "metrics", port = 9100, target_port = 9090 } } },
        fx.slice{ ports = { { name = "metrics", port = 9090 }, { name = "http", port = 8080 } },
          endpoints = { { address = "10.244.2.7" } } },
      }
      assert.same({ "10.244.2.7:8080" }, decode.find(entries, "10.96.0.10:80/TCP").backends)
      assert.same({ "10.244.2.7:9090" }, decode.find(entries, "10.96.0.10:9100/TCP").backends)
    end)

    it("named targetPort resolves through the EndpointSlice port of the same name", function()
      -- two versions of the pod name their container port "web" differently
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10", ports = { { name = "http", port = 80, target_port = "web" } } },
        fx.slice{ name = "web-old", ports = { { name = "http", port = 8080 } },
          endpoints = { { address = "10.244.2.7" } } },
        fx.slice{ name = "web-new", ports = { { name = "http", port = 8000 } },
          endpoints = { { address = "10.244.2.8" } } },
      }
      assert.same({ "10.244.2.7:8080", "10.244.2.8:8000" }, decode.find(entries, "10.96.0.10:80/TCP").backends)
    end)

    it("maps a single unnamed service port to the slice's unnamed port", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10", ports = { { port = 80, target_port = 8080 } } },
        fx.slice{ ports = { { port = 8080 } }, endpoints = { { address = "10.244.2.7" } } },
      }
      assert.same({ "10.244.2.7:8080" }, decode.find(entries, "10.96.0.10:80/TCP").backends)
    end)

    it("requires the slice port's protocol to match the service port's", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10", ports = {
          { name = "dns", port = 53, protocol = "UDP" }, { name = "dns-tcp", port = 53, protocol = "TCP" } } },
        fx.slice{ ports = { { name = "dns", port = 5353, protocol = "UDP" }, { name = "dns-tcp", port = 5354 } },
          endpoints = { { address = "10.244.2.7" } } },
      }
      assert.same({ "10.244.2.7:5353" }, decode.find(entries, "10.96.0.10:53/UDP").backends)
      assert.same({ "10.244.2.7:5354" }, decode.find(entries, "10.96.0.10:53/TCP").backends)
    end)
  end)

  describe("endpoints", function()
    it("uses every IPv4 EndpointSlice labelled with the Service's name in its namespace", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10" },
        fx.slice{ name = "web-1", endpoints = { { address = "10.244.2.7" } } },
        fx.slice{ name = "web-2", endpoints = { { address = "10.244.2.8" } } },
        fx.slice{ name = "web-v6", address_type = "IPv6", endpoints = { { address = "fd00::7" } } },
        fx.slice{ name = "web-x", namespace = "other", endpoints = { { address = "10.244.9.9" } } },
        fx.slice{ name = "api-1", service = "api", endpoints = { { address = "10.244.8.8" } } },
      }
      assert.same({ "10.244.2.7:8080", "10.244.2.8:8080" }, decode.find(entries, "10.96.0.10:80/TCP").backends)
    end)

    it("deduplicates an address listed in two slices", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10" },
        fx.slice{ name = "web-1", endpoints = { { address = "10.244.2.7" } } },
        fx.slice{ name = "web-2", endpoints = { { address = "10.244.2.7" }, { address = "10.244.2.8" } } },
      }
      assert.same({ "10.244.2.7:8080", "10.244.2.8:8080" }, decode.find(entries, "10.96.0.10:80/TCP").backends)
    end)

    it("uses endpoints whose ready condition is true or unset", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10" },
        fx.slice{ endpoints = {
          { address = "10.244.2.7", ready = true }, { address = "10.244.2.8" },
          { address = "10.244.2.9", ready = false },
          { address = "10.244.2.10", ready = false, serving = true, terminating = true },
        } },
      }
      assert.same({ "10.244.2.7:8080", "10.244.2.8:8080" }, decode.find(entries, "10.96.0.10:80/TCP").backends)
    end)

    it("uses serving+terminating endpoints when none is ready", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10" },
        fx.slice{ endpoints = {
          { address = "10.244.2.7", ready = false, serving = true, terminating = true },
          { address = "10.244.2.8", ready = false, serving = false, terminating = true },
          { address = "10.244.2.9", ready = false },
        } },
      }
      assert.same({ "10.244.2.7:8080" }, decode.find(entries, "10.96.0.10:80/TCP").backends)
    end)

    it("keeps a frontend with zero backends when no endpoint is usable (connects fail fast)", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10" },
        fx.slice{ endpoints = { { address = "10.244.2.9", ready = false, serving = false, terminating = true } } },
      }
      local fe = decode.find(entries, "10.96.0.10:80/TCP")
      assert.same({}, fe.backends)
      assert.equals(0, fe.total)
    end)

    it("orders backends local first, each group by address, and counts the local ones", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10" },
        fx.slice{ endpoints = {
          { address = "10.244.2.20", node = "node-2" }, { address = "10.244.1.9", node = NODE },
          { address = "10.244.2.3", node = "node-2" }, { address = "10.244.1.10", node = NODE },
        } },
      }
      local fe = decode.find(entries, "10.96.0.10:80/TCP")
      assert.same({ "10.244.1.9:8080 local", "10.244.1.10:8080 local", "10.244.2.3:8080", "10.244.2.20:8080" },
        fe.backends)
      assert.equals(4, fe.total)
      assert.equals(2, fe.local_count)
      assert.is_false(fe.local_only)
    end)
  end)

  describe("traffic policies", function()
    it("internalTrafficPolicy Local restricts ClusterIP frontends to local endpoints", function()
      local entries = desired{
        fx.service{ type = "NodePort", cluster_ip = "10.96.0.10", internal_policy = "Local",
          ports = { { port = 80, node_port = 30080 } } },
        two_endpoints(),
      }
      local cluster_ip = decode.find(entries, "10.96.0.10:80/TCP")
      assert.is_true(cluster_ip.local_only)
      assert.same({ "10.244.1.5:8080 local" }, cluster_ip.backends)
      assert.equals(1, cluster_ip.total)
      assert.equals(1, cluster_ip.local_count)
      -- the external side keeps its own (Cluster) policy
      local node_port = decode.find(entries, "*:30080/TCP")
      assert.is_false(node_port.local_only)
      assert.same({ "10.244.1.5:8080 local", "10.244.2.7:8080" }, node_port.backends)
    end)

    it("externalTrafficPolicy never restricts what socket hooks see: a Local NodePort gets every endpoint", function()
      local entries = desired{
        fx.service{ type = "NodePort", cluster_ip = "10.96.0.10", external_policy = "Local",
          ports = { { port = 80, node_port = 30080 } } },
        two_endpoints(),
      }
      local node_port = decode.find(entries, "*:30080/TCP")
      assert.is_false(node_port.local_only)
      assert.same({ "10.244.1.5:8080 local", "10.244.2.7:8080" }, node_port.backends)
      assert.equals(2, node_port.total)
      assert.equals(1, node_port.local_count)
    end)

    it("externalTrafficPolicy never restricts what socket hooks see: nor LoadBalancer and ExternalIP", function()
      local entries = desired{
        fx.service{ type = "LoadBalancer", cluster_ip = "10.96.0.10", external_policy = "Local",
          ports = { { port = 80 } }, ingress = { "203.0.113.10" }, external_ips = { "198.51.100.7" } },
        two_endpoints(),
      }
      for _, frontend in ipairs({ "203.0.113.10:80/TCP", "198.51.100.7:80/TCP", "10.96.0.10:80/TCP" }) do
        local fe = decode.find(entries, frontend)
        assert.is_false(fe.local_only)
        assert.same({ "10.244.1.5:8080 local", "10.244.2.7:8080" }, fe.backends)
      end
    end)

    it("externalTrafficPolicy never restricts what socket hooks see: nor its old spelling OnlyLocal", function()
      local entries = desired{
        fx.service{ type = "NodePort", cluster_ip = "10.96.0.10", external_policy = "OnlyLocal",
          ports = { { port = 80, node_port = 30080 } } },
        two_endpoints(),
      }
      assert.is_false(decode.find(entries, "*:30080/TCP").local_only)
      assert.equals(2, decode.find(entries, "*:30080/TCP").total)
    end)

    it("keeps a Local frontend with no local endpoint, with zero backends", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10", internal_policy = "Local" },
        fx.slice{ endpoints = { { address = "10.244.2.7", node = "node-2" } } },
      }
      local fe = decode.find(entries, "10.96.0.10:80/TCP")
      assert.is_true(fe.local_only)
      assert.same({}, fe.backends)
      assert.equals(0, fe.total)
      assert.equals(0, fe.local_count)
    end)

    it("a Local frontend uses this node's serving+terminating endpoints when none local is ready", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10", internal_policy = "Local" },
        fx.slice{ endpoints = {
          { address = "10.244.1.5", node = NODE, ready = false, serving = true, terminating = true },
          { address = "10.244.2.7", node = "node-2" },
        } },
      }
      assert.same({ "10.244.1.5:8080 local" }, decode.find(entries, "10.96.0.10:80/TCP").backends)
    end)
  end)

  describe("topology", function()
    local function zoned(extra)
      local endpoints = {
        { address = "10.244.1.5", node = NODE, zones = { "zone-a" } },
        { address = "10.244.2.7", node = "node-2", zones = { "zone-b" } },
        { address = "10.244.3.9", node = "node-3", zones = { "zone-a" } },
      }
      for _, e in ipairs(extra or {}) do
        endpoints[#endpoints + 1] = e
      end
      return fx.slice{ endpoints = endpoints }
    end

    it("PreferClose uses only the endpoints hinted for this node's zone when every endpoint has hints", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10", traffic_distribution = "PreferClose" }, zoned(),
      }
      assert.same({ "10.244.1.5:8080 local", "10.244.3.9:8080" }, decode.find(entries, "10.96.0.10:80/TCP").backends)
    end)

    it("uses all endpoints when one endpoint has no zone hint", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10", traffic_distribution = "PreferClose" },
        zoned{ { address = "10.244.4.1", node = "node-4" } },
      }
      assert.equals(4, #decode.find(entries, "10.96.0.10:80/TCP").backends)
    end)

    it("uses all endpoints when no hint is for this node's zone", function()
      local entries = desired({
        fx.node{ name = "node-9", zone = "zone-z", internal_ip = "192.168.0.9" },
        fx.service{ cluster_ip = "10.96.0.10", traffic_distribution = "PreferClose" }, zoned(),
      }, { node_name = "node-9" })
      assert.equals(3, #decode.find(entries, "10.96.0.10:80/TCP").backends)
    end)

    it("uses all endpoints when this node has no zone label", function()
      local entries = desired({
        fx.node{ name = "node-9", internal_ip = "192.168.0.9" },
        fx.service{ cluster_ip = "10.96.0.10", traffic_distribution = "PreferClose" }, zoned(),
      }, { node_name = "node-9" })
      assert.equals(3, #decode.find(entries, "10.96.0.10:80/TCP").backends)
    end)
  end)

  describe("session affinity", function()
    it("ClientIP affinity uses sessionAffinityConfig.clientIP.timeoutSeconds", function()
      local entries = desired{ fx.service{ cluster_ip = "10.96.0.10", affinity = "ClientIP", affinity_timeout = 600 } }
      assert.equals(600, decode.find(entries, "10.96.0.10:80/TCP").affinity)
    end)

    it("ClientIP affinity defaults to 10800 seconds", function()
      local entries = desired{ fx.service{ cluster_ip = "10.96.0.10", affinity = "ClientIP" } }
      assert.equals(10800, decode.find(entries, "10.96.0.10:80/TCP").affinity)
    end)

    it("ClientIP affinity is at most 86400 seconds", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10", affinity = "ClientIP", affinity_timeout = 999999 },
      }
      assert.equals(86400, decode.find(entries, "10.96.0.10:80/TCP").affinity)
    end)

    it("sessionAffinity None means no affinity", function()
      local entries = desired{ fx.service{ cluster_ip = "10.96.0.10", affinity = "None", affinity_timeout = 600 } }
      assert.equals(0, decode.find(entries, "10.96.0.10:80/TCP").affinity)
    end)

    it("applies the affinity to every frontend of the Service", function()
      local entries = desired{
        fx.service{ type = "NodePort", cluster_ip = "10.96.0.10", affinity = "ClientIP", affinity_timeout = 60,
          ports = { { port = 80, node_port = 30080 } } },
      }
      for _, fe in ipairs(decode.frontends(entries)) do
        assert.equals(60, fe.affinity)
      end
    end)
  end)

  describe("out-of-cluster agent", function()
    it("still programs Services, with no local endpoint", function()
      local entries = desired({
        fx.service{ type = "NodePort", cluster_ip = "10.96.0.10", internal_policy = "Local",
          ports = { { port = 80, node_port = 30080 } } },
        two_endpoints(),
      }, { node_name = "edge-host", out_cluster = true })
      local node_port = decode.find(entries, "*:30080/TCP")
      assert.same({ "10.244.1.5:8080", "10.244.2.7:8080" }, node_port.backends)
      assert.equals(0, node_port.local_count)
      local cluster_ip = decode.find(entries, "10.96.0.10:80/TCP")
      assert.is_true(cluster_ip.local_only)
      assert.same({}, cluster_ip.backends)
    end)
  end)

  describe("bad fields", function()
    it("skips a service port out of range with a rejection naming the field, and keeps the rest", function()
      local entries, rejections = desired{
        fx.service{ cluster_ip = "10.96.0.10", ports = { { name = "bad", port = 70000 }, { name = "ok", port = 80 } } },
      }
      assert.same({ "10.96.0.10:80/TCP ClusterIP" }, decode.keys(entries))
      assert.same({ "default/web: spec.ports[0].port: 70000 is not a port number (1..65535)" }, reasons(rejections))
    end)

    it("skips a nodePort out of range with a rejection naming the field, and keeps the rest", function()
      local entries, rejections = desired{
        fx.service{ type = "NodePort", cluster_ip = "10.96.0.10", ports = { { port = 80, node_port = 0 } } },
      }
      assert.same({ "10.96.0.10:80/TCP ClusterIP" }, decode.keys(entries))
      assert.same({ "default/web: spec.ports[0].nodePort: 0 is not a port number (1..65535)" }, reasons(rejections))
    end)

    it("skips a ClusterIP that is not IPv4 text with one rejection naming the field, and keeps the rest", function()
      local entries, rejections = desired{
        fx.service{ cluster_ips = { "10.96.0.300" }, external_ips = { "198.51.100.7" },
          ports = { { name = "a", port = 80 }, { name = "b", port = 81 } } },
      }
      assert.same({ "198.51.100.7:80/TCP ExternalIP", "198.51.100.7:81/TCP ExternalIP" }, decode.keys(entries))
      assert.same({ 'default/web: spec.clusterIPs[0]: "10.96.0.300" is not an IPv4 address' }, reasons(rejections))
    end)

    it("skips an external IP that is not IPv4 text with a rejection naming the field", function()
      local entries, rejections = desired{
        fx.service{ cluster_ip = "10.96.0.10", external_ips = { "198.51.100.7", "example.com" } },
      }
      assert.same({ "10.96.0.10:80/TCP ClusterIP", "198.51.100.7:80/TCP ExternalIP" }, decode.keys(entries))
      assert.same({ 'default/web: spec.externalIPs[1]: "example.com" is not an IPv4 address' }, reasons(rejections))
    end)

    it("programs an address listed twice once, and reports the second field", function()
      local entries, rejections = desired{
        fx.service{ cluster_ip = "10.96.0.10", external_ips = { "10.96.0.10" } },
      }
      assert.same({ "10.96.0.10:80/TCP ClusterIP" }, decode.keys(entries))
      assert.equals(1, #rejections)
      assert.matches("spec.externalIPs[0]", rejections[1].reason, 1, true)
    end)
  end)

  describe("Services left to another proxy", function()
    it("does not program a Service labelled service.kubernetes.io/headless (a debug notice says why)", function()
      local entries, rejections, _, notices = desired{
        fx.service{ cluster_ip = "10.96.0.10", labels = { ["service.kubernetes.io/headless"] = "" } },
        two_endpoints(),
      }
      assert.same({}, decode.keys(entries))
      assert.same({}, rejections)
      assert.equals(1, #notices)
      assert.equals("debug", notices[1].level)
      assert.equals("left to another proxy: labelled service.kubernetes.io/headless", notices[1].fields.reason)
    end)

    it("does not program a Service labelled service.kubernetes.io/service-proxy-name without the option", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10", labels = { ["service.kubernetes.io/service-proxy-name"] = "other" } },
        two_endpoints(),
      }
      assert.same({}, decode.keys(entries))
    end)

    it("does not program a Service whose service-proxy-name is another than --service-proxy-name", function()
      local entries = desired({
        fx.service{ cluster_ip = "10.96.0.10", labels = { ["service.kubernetes.io/service-proxy-name"] = "other" } },
        two_endpoints(),
      }, { service_proxy_name = "balancing" })
      assert.same({}, decode.keys(entries))
    end)

    it("programs a Service whose service-proxy-name equals --service-proxy-name", function()
      local entries = desired({
        fx.service{ cluster_ip = "10.96.0.10",
          labels = { ["service.kubernetes.io/service-proxy-name"] = "balancing" } },
        two_endpoints(),
      }, { service_proxy_name = "balancing" })
      assert.same({ "10.96.0.10:80/TCP ClusterIP" }, decode.keys(entries))
      assert.equals(2, decode.find(entries, "10.96.0.10:80/TCP").total)
    end)

    it("ignores an EndpointSlice labelled for another proxy, as kube-proxy does", function()
      local entries = desired{
        fx.service{ cluster_ip = "10.96.0.10" },
        fx.slice{ name = "web-a", endpoints = { { address = "10.244.1.5", node = NODE } } },
        fx.slice{ name = "web-b", labels = { ["service.kubernetes.io/headless"] = "" },
          endpoints = { { address = "10.244.2.7" } } },
        fx.slice{ name = "web-c", labels = { ["service.kubernetes.io/service-proxy-name"] = "other" },
          endpoints = { { address = "10.244.3.3" } } },
      }
      assert.same({ "10.244.1.5:8080 local" }, decode.find(entries, "10.96.0.10:80/TCP").backends)
    end)

    it("a Service relabelled for another proxy loses its frontends", function()
      local store, ctx = world{ fx.service{ cluster_ip = "10.96.0.10" }, two_endpoints() }
      store:take_dirty()
      assert(store:upsert(fx.service{ cluster_ip = "10.96.0.10",
        labels = { ["service.kubernetes.io/headless"] = "" } }))
      assert.is_true(store:take_dirty()["service/default/web"])
      assert.same({}, decode.keys((service.desired(store, ctx, "default", "web"))))
    end)
  end)

  describe("addresses as kube-proxy reads them", function()
    it("ipMode Proxy: no frontend for that load balancer ingress IP", function()
      local entries, rejections = desired{
        fx.service{ type = "LoadBalancer", cluster_ip = "10.96.0.10", ports = { { port = 80 } },
          ingress = { { ip = "203.0.113.10", ipMode = "Proxy" }, { ip = "203.0.113.11", ipMode = "VIP" } } },
      }
      assert.same({ "10.96.0.10:80/TCP ClusterIP", "203.0.113.11:80/TCP LoadBalancer" }, decode.keys(entries))
      assert.same({}, rejections)
    end)

    it("IPv6 single-stack: no IPv4 frontend at all, not even for IPv4 external or ingress IPs", function()
      local entries, rejections = desired{
        fx.service{ type = "LoadBalancer", cluster_ips = { "fd00::10" },
          ports = { { port = 80, node_port = 30080 } },
          ingress = { "203.0.113.10" }, external_ips = { "198.51.100.7" } },
        two_endpoints(),
      }
      assert.same({}, decode.keys(entries))
      assert.same({}, rejections)
    end)

    it("reads leading zeros in Service addresses as decimal (172.30.0.041 is 172.30.0.41)", function()
      local entries, rejections = desired{
        fx.service{ cluster_ip = "172.30.0.041", external_ips = { "198.051.100.007" } },
        fx.slice{ endpoints = { { address = "10.244.001.005", node = NODE } } },
      }
      assert.same({ "172.30.0.41:80/TCP ClusterIP", "198.51.100.7:80/TCP ExternalIP" }, decode.keys(entries))
      assert.same({ "10.244.1.5:8080 local" }, decode.find(entries, "172.30.0.41:80/TCP").backends)
      assert.same({}, rejections)
    end)

    for _, case in ipairs({
      { "0.0.0.0", "the unspecified address" },
      { "255.255.255.255", "the broadcast address" },
      { "224.0.0.1", "a multicast address" },
      { "239.255.255.250", "a multicast address" },
    }) do
      it("refuses " .. case[1] .. " as a Service address with a reason naming the field", function()
        local entries, rejections = desired{
          fx.service{ type = "NodePort", cluster_ips = { case[1] }, external_ips = { "198.51.100.7", case[1] },
            ports = { { port = 80, node_port = 30080 } } },
        }
        -- never the NodePort wildcard (address 0) nor a frontend on it
        assert.same({ "*:30080/TCP NodePort", "198.51.100.7:80/TCP ExternalIP" }, decode.keys(entries))
        assert.same({
          string.format('default/web: spec.clusterIPs[0]: "%s" is %s, not a frontend', case[1], case[2]),
          string.format('default/web: spec.externalIPs[1]: "%s" is %s, not a frontend', case[1], case[2]),
        }, reasons(rejections))
      end)
    end
  end)

  describe("two Services on one frontend", function()
    local function claimants()
      return fx.service{ name = "old", created = "2026-01-01T00:00:00Z", cluster_ip = "10.96.0.10",
          external_ips = { "198.51.100.7" } },
        fx.service{ name = "new", created = "2026-02-01T00:00:00Z", cluster_ip = "10.96.0.20",
          external_ips = { "198.51.100.7" } }
    end

    it("the older keeps it; the other's frontend is rejected naming the winner; its other frontends stay", function()
      local old, new = claimants()
      local store, ctx = world{ new, old }
      local won = service.desired(store, ctx, "default", "old")
      assert.same({ "10.96.0.10:80/TCP ClusterIP", "198.51.100.7:80/TCP ExternalIP" }, decode.keys(won))
      local lost, rejections = service.desired(store, ctx, "default", "new")
      assert.same({ "10.96.0.20:80/TCP ClusterIP" }, decode.keys(lost))
      assert.same({ "default/new: spec.externalIPs[0]: frontend 198.51.100.7:80/TCP is already programmed by "
        .. "older Service default/old" }, reasons(rejections))
    end)

    it("older is creationTimestamp, then namespace/name (a manifest without one is newer)", function()
      local a = fx.service{ namespace = "a", name = "z", cluster_ip = "10.96.0.10", external_ips = { "198.51.100.7" } }
      local b = fx.service{ namespace = "b", name = "a", cluster_ip = "10.96.0.20", external_ips = { "198.51.100.7" } }
      local store, ctx = world{ b, a }
      assert.equals(2, #decode.keys((service.desired(store, ctx, "a", "z"))))
      assert.equals(1, #decode.keys((service.desired(store, ctx, "b", "a"))))
      local stamped = fx.service{ namespace = "b", name = "b", created = "2026-01-01T00:00:00Z",
        cluster_ip = "10.96.0.30", external_ips = { "198.51.100.7" } }
      assert(store:upsert(stamped))
      assert.equals(2, #decode.keys((service.desired(store, ctx, "b", "b"))))
      assert.equals(1, #decode.keys((service.desired(store, ctx, "a", "z"))))
    end)

    it("a NodePort claimed by two Services goes to the older", function()
      local old = fx.service{ name = "old", type = "NodePort", created = "2026-01-01T00:00:00Z",
        cluster_ip = "10.96.0.10", ports = { { port = 80, node_port = 30080 } } }
      local new = fx.service{ name = "new", type = "NodePort", created = "2026-02-01T00:00:00Z",
        cluster_ip = "10.96.0.20", ports = { { port = 80, node_port = 30080 } } }
      local store, ctx = world{ new, old }
      assert.same({ "*:30080/TCP NodePort", "10.96.0.10:80/TCP ClusterIP" },
        decode.keys((service.desired(store, ctx, "default", "old"))))
      local lost, rejections = service.desired(store, ctx, "default", "new")
      assert.same({ "10.96.0.20:80/TCP ClusterIP" }, decode.keys(lost))
      assert.matches("frontend *:30080/TCP is already programmed by older Service default/old",
        rejections[1].reason, 1, true)
    end)

    it("when the winner goes, the other Service is marked dirty and takes the frontend", function()
      local old, new = claimants()
      local store, ctx = world{ old, new }
      store:take_dirty()
      assert(store:delete(old))
      local dirty = store:take_dirty()
      assert.is_true(dirty["service/default/new"])
      assert.same({ "10.96.0.20:80/TCP ClusterIP", "198.51.100.7:80/TCP ExternalIP" },
        decode.keys((service.desired(store, ctx, "default", "new"))))
    end)

    it("a Service that starts claiming another's frontend marks that Service dirty", function()
      local old = fx.service{ name = "old", created = "2026-02-01T00:00:00Z", cluster_ip = "10.96.0.10",
        external_ips = { "198.51.100.7" } }
      local store = world{ old }
      store:take_dirty()
      assert(store:upsert(fx.service{ name = "older", created = "2026-01-01T00:00:00Z", cluster_ip = "10.96.0.20",
        external_ips = { "198.51.100.7" } }))
      assert.is_true(store:take_dirty()["service/default/old"])
    end)
  end)

  describe("determinism", function()
    it("gives the same entries whatever order the slices arrived in", function()
      local a = fx.slice{ name = "web-a",
        endpoints = { { address = "10.244.2.7" }, { address = "10.244.1.5", node = NODE } } }
      local b = fx.slice{ name = "web-b", ports = { { port = 9999 } }, endpoints = { { address = "10.244.2.7" },
        { address = "10.244.3.3" } } }
      local svc = fx.service{ type = "NodePort", cluster_ip = "10.96.0.10",
        ports = { { port = 80, node_port = 30080 } } }
      local one = decode.frontends((desired{ svc, a, b }))
      local two = decode.frontends((desired{ b, a, svc }))
      assert.same(one, two)
      -- one backend per address and port: 10.244.2.7 serves 8080 and 9999
      assert.same({ "10.244.1.5:8080 local", "10.244.2.7:8080", "10.244.2.7:9999", "10.244.3.3:9999" },
        one[1].backends)
    end)
  end)
end)
