-- BalancingPolicy → map entries (API.md "BalancingPolicy", "Both policies").
-- This agent runs on node-1 (192.168.0.1).
local balancing = require("balancing.reconcile.balancing")
local fx = require("fixtures.policies.builders")
local world = require("fixtures.policies.world")

local port = fx.port

local function web_pod(opts)
  opts.namespace = opts.namespace or "shop"
  opts.labels = opts.labels or { app = "web" }
  return fx.pod(opts)
end

-- A BalancingPolicy for the virtual address 10.200.0.1:80/TCP, backends on
-- port 8080 (opts override).
local function vip_policy(opts)
  opts = opts or {}
  local address
  if not (opts.frontend or opts.service) then
    address = { ip = "10.200.0.1", ports = { port("80", "TCP") } }
  end
  return fx.balancing{
    name = opts.name or "web-global",
    id = opts.id == nil and "200" or opts.id or nil,
    frontend = opts.frontend,
    service = opts.service,
    address = address,
    selector = opts.selector or { matchLabels = { app = "web" } },
    mode = opts.mode,
    addresses = opts.addresses,
    ports = opts.ports or { port("8080", "TCP") },
    node_selector = opts.node_selector,
    out_cluster = opts.out_cluster,
  }
end

local function cluster(extra)
  local objects = {
    fx.node{ name = "node-1", internal_ip = "192.168.0.1", labels = { region = "east" } },
    fx.node{ name = "node-2", internal_ip = "192.168.0.2", proxy_ip = "172.16.0.2" },
    fx.node{ name = "node-3", internal_ip = "192.168.0.3" },
    web_pod{ name = "web-a", node = "node-2", ip = "10.244.2.5" },
    web_pod{ name = "web-b", node = "node-1", ip = "10.244.1.5" },
    web_pod{ name = "web-c", node = "node-3", ip = "10.244.3.5" },
  }
  for _, obj in ipairs(extra or {}) do
    objects[#objects + 1] = obj
  end
  return objects
end

describe("BalancingPolicy", function()
  describe("serviceEndpoint in podEndpoint mode (the default)", function()
    it("balances over the usable selected pods of every node, at pod IP : toPort", function()
      local frontends = world.run(balancing, cluster{ vip_policy() }, "web-global")
      assert.same({ "10.200.0.1:80/TCP" }, world.keys(frontends))
      assert.same({ "10.244.1.5:8080 local", "10.244.2.5:8080", "10.244.3.5:8080" },
        frontends[1].backends)
      assert.equals("podEndpoint", frontends[1].mode)
    end)

    it("puts the backends on this node first and counts them as local", function()
      local fe = world.run(balancing, cluster{ vip_policy() }, "web-global")[1]
      assert.equals(3, fe.total)
      assert.equals(1, fe.local_count)
      assert.equals("10.244.1.5:8080 local", fe.backends[1])
    end)

    it("selects pods of any namespace", function()
      local objects = cluster{ vip_policy(), web_pod{ namespace = "other", name = "web-d", node = "node-3",
        ip = "10.244.3.9" } }
      local fe = world.run(balancing, objects, "web-global")[1]
      assert.same({ "10.244.1.5:8080 local", "10.244.2.5:8080", "10.244.3.5:8080", "10.244.3.9:8080" },
        fe.backends)
    end)

    it("skips pods that are not usable (not Running, not Ready, no IP, being deleted)", function()
      local objects = cluster{ vip_policy(),
        web_pod{ name = "pending", node = "node-2", ip = "10.244.2.11", phase = "Pending" },
        web_pod{ name = "unready", node = "node-2", ip = "10.244.2.12", ready = false },
        web_pod{ name = "no-ip", node = "node-2" },
        web_pod{ name = "deleting", node = "node-2", ip = "10.244.2.13", deleting = true } }
      local fe = world.run(balancing, objects, "web-global")[1]
      assert.same({ "10.244.1.5:8080 local", "10.244.2.5:8080", "10.244.3.5:8080" }, fe.backends)
    end)
  end)

  describe("serviceEndpoint in hostPort mode", function()
    it("uses the first InternalIP of each pod's node : toPort", function()
      local frontends = world.run(balancing, cluster{ vip_policy{ mode = "hostPort" } }, "web-global")
      assert.equals("hostPort", frontends[1].mode)
      assert.same({ "192.168.0.1:8080 local", "192.168.0.2:8080", "192.168.0.3:8080" },
        frontends[1].backends)
    end)

    it("gives one backend for two pods on one node", function()
      local objects = cluster{ vip_policy{ mode = "hostPort" },
        web_pod{ name = "web-a2", node = "node-2", ip = "10.244.2.6" } }
      local fe = world.run(balancing, objects, "web-global")[1]
      assert.same({ "192.168.0.1:8080 local", "192.168.0.2:8080", "192.168.0.3:8080" }, fe.backends)
    end)

    it("skips a pod whose node is unknown", function()
      local objects = cluster{ vip_policy{ mode = "hostPort" },
        web_pod{ name = "lost", node = "node-9", ip = "10.244.9.5" } }
      local fe = world.run(balancing, objects, "web-global")[1]
      assert.same({ "192.168.0.1:8080 local", "192.168.0.2:8080", "192.168.0.3:8080" }, fe.backends)
    end)
  end)

  describe("serviceEndpoint in nodeProxy mode", function()
    it("uses each pod's node proxy IP: nodeProxyIpv4, else the first InternalIP", function()
      local frontends = world.run(balancing, cluster{ vip_policy{ mode = "nodeProxy" } }, "web-global")
      assert.equals("nodeProxy", frontends[1].mode)
      assert.same({ "192.168.0.1:8080 local", "172.16.0.2:8080", "192.168.0.3:8080" },
        frontends[1].backends)
    end)

    it("gives one local backend for nodes sharing a proxy IP when one of them is this node", function()
      local objects = {
        fx.node{ name = "node-1", internal_ip = "192.168.0.1", proxy_ip = "172.16.0.100" },
        fx.node{ name = "node-2", internal_ip = "192.168.0.2", proxy_ip = "172.16.0.100" },
        web_pod{ name = "web-a", node = "node-1", ip = "10.244.1.5" },
        web_pod{ name = "web-b", node = "node-2", ip = "10.244.2.5" },
        vip_policy{ mode = "nodeProxy" },
      }
      local fe = world.run(balancing, objects, "web-global")[1]
      assert.same({ "172.16.0.100:8080 local" }, fe.backends)
      assert.equals(1, fe.local_count)
    end)

    it("skips a pod whose node is unknown", function()
      local objects = cluster{ vip_policy{ mode = "nodeProxy" },
        web_pod{ name = "lost", node = "node-9", ip = "10.244.9.5" } }
      local fe = world.run(balancing, objects, "web-global")[1]
      assert.equals(3, fe.total)
    end)
  end)

  describe("addressEndpoint", function()
    it("balances over the fixed addresses : toPort, with mode address", function()
      local policy = vip_policy{ addresses = { "203.0.113.7", "198.51.100.4" } }
      local frontends = world.run(balancing, cluster{ policy }, "web-global")
      assert.equals("address", frontends[1].mode)
      assert.same({ "198.51.100.4:8080", "203.0.113.7:8080" }, frontends[1].backends)
      assert.equals(0, frontends[1].local_count)
    end)

    it("counts an address of this node as local, and puts it first", function()
      local policy = vip_policy{ addresses = { "203.0.113.7", "192.168.0.1" } }
      local fe = world.run(balancing, cluster{ policy }, "web-global")[1]
      assert.same({ "192.168.0.1:8080 local", "203.0.113.7:8080" }, fe.backends)
      assert.equals(1, fe.local_count)
    end)
  end)

  describe("with no usable backend: what happens without the policy happens", function()
    local nothing = { matchLabels = { app = "nothing" } }
    local web_service = fx.service{ namespace = "shop", name = "web", cluster_ip = "10.96.5.5",
      ports = { { name = "http", port = 80, target_port = 8080 } } }

    it("a serviceMatcher policy has no entry at all, so the Service's own entry serves", function()
      local policy = vip_policy{ service = { namespace = "shop", name = "web" }, selector = nothing }
      local frontends, rejections, entries, notices = world.run(balancing, cluster{ web_service, policy }, "web-global")
      assert.same({}, frontends)
      assert.same({}, rejections)
      assert.equals("balancing/web-global", entries.owner)
      assert.same({ "not programmed: no backend matches (the frontend's Service serves it meanwhile)" },
        world.messages(notices))
    end)

    it("a serviceMatcher policy whose pods' nodes are all unknown (hostPort) has no entry either", function()
      local policy = vip_policy{ service = { namespace = "shop", name = "web" }, mode = "hostPort" }
      local objects = { web_service, policy, web_pod{ name = "lost", node = "node-9", ip = "10.244.9.5" } }
      assert.same({}, world.run(balancing, objects, "web-global"))
    end)

    it("an addressMatcher policy keeps its frontend with zero backends, so connects fail fast", function()
      local frontends, rejections = world.run(balancing, cluster{ vip_policy{ selector = nothing } }, "web-global")
      assert.same({ "10.200.0.1:80/TCP" }, world.keys(frontends))
      assert.equals(0, frontends[1].total)
      assert.same({}, frontends[1].backends)
      assert.same({}, rejections)
    end)

    it("a serviceMatcher policy programs its frontends again once a backend appears", function()
      local policy = vip_policy{ service = { namespace = "shop", name = "web" }, selector = nothing }
      local store = world.store(cluster{ web_service, policy })
      assert.same({}, balancing.desired(store, world.ctx(store), "web-global").frontends)
      assert(store:upsert(web_pod{ name = "web-new", node = "node-2", ip = "10.244.2.9",
        labels = { app = "nothing" } }))
      assert.equals(1, #balancing.desired(store, world.ctx(store), "web-global").frontends)
    end)
  end)

  describe("serviceMatcher frontend", function()
    it("balances the Service's ClusterIP ports, mapped by port name", function()
      local service = fx.service{ namespace = "shop", name = "web", cluster_ip = "10.96.5.5",
        ports = { { name = "http", port = 80, target_port = 8080 },
          { name = "https", port = 443, target_port = 8443 } } }
      local policy = vip_policy{ service = { namespace = "shop", name = "web" },
        ports = { port("9080", "TCP", "http"), port("9443", "TCP", "https") } }
      local frontends = world.run(balancing, cluster{ service, policy }, "web-global")
      assert.same({ "10.96.5.5:80/TCP", "10.96.5.5:443/TCP" }, world.keys(frontends))
      assert.same({ "10.244.1.5:9080 local", "10.244.2.5:9080", "10.244.3.5:9080" }, frontends[1].backends)
      assert.same({ "10.244.1.5:9443 local", "10.244.2.5:9443", "10.244.3.5:9443" }, frontends[2].backends)
      assert.equals("balancing", frontends[1].type)
    end)
  end)

  describe("what it never sets", function()
    it("carries no session affinity and is never local-only", function()
      local fe = world.run(balancing, cluster{ vip_policy() }, "web-global")[1]
      assert.equals(0, fe.affinity)
      assert.is_false(fe.local_only)
    end)
  end)

  describe("where it applies", function()
    it("programs nothing, and rejects nothing, on a node its nodeLabelSelector does not match", function()
      local policy = vip_policy{ node_selector = { matchLabels = { region = "west" } } }
      local frontends, rejections = world.run(balancing, cluster{ policy }, "web-global")
      assert.same({}, frontends)
      assert.same({}, rejections)
    end)

    it("programs its frontends on a node its nodeLabelSelector matches", function()
      local policy = vip_policy{ node_selector = { matchExpressions = {
        { key = "region", operator = "In", values = { "east", "north" } } } } }
      assert.equals(1, #world.run(balancing, cluster{ policy }, "web-global"))
    end)

    it("applies on an agent outside the cluster by default (enableOutCluster true)", function()
      local frontends = world.run(balancing, cluster{ vip_policy() }, "web-global",
        { node_name = "edge-host", out_cluster = true })
      assert.same({ "10.244.1.5:8080", "10.244.2.5:8080", "10.244.3.5:8080" }, frontends[1].backends)
    end)

    it("programs nothing outside the cluster when enableOutCluster is false", function()
      local policy = vip_policy{ out_cluster = false }
      local frontends, rejections, _, notices = world.run(balancing, cluster{ policy }, "web-global",
        { node_name = "edge-host", out_cluster = true })
      assert.same({}, frontends)
      assert.same({}, rejections)
      assert.same({ "not programmed: this agent runs outside the cluster and enableOutCluster is not set" },
        world.messages(notices))
    end)

    it("still applies inside the cluster when enableOutCluster is false", function()
      local policy = vip_policy{ out_cluster = false }
      assert.equals(1, #world.run(balancing, cluster{ policy }, "web-global"))
    end)
  end)

  describe("entries", function()
    it("belong to the owner balancing/<name>, with type balancing and the policy's serviceId", function()
      local frontends, _, entries = world.run(balancing, cluster{ vip_policy() }, "web-global")
      assert.equals("balancing/web-global", entries.owner)
      assert.equals("balancing", frontends[1].type)
      assert.equals(200, frontends[1].id)
      assert.is_nil(entries.loop_pods)
    end)

    it("follow a modified spec: the current object is all that counts", function()
      local store = world.store(cluster{ vip_policy() })
      assert(store:upsert(vip_policy{ mode = "hostPort", ports = { port("30080", "TCP") } }))
      local entries = balancing.desired(store, world.ctx(store), "web-global")
      local fe = require("fixtures.services.decode").frontend(entries.frontends[1])
      assert.equals("hostPort", fe.mode)
      assert.same({ "192.168.0.1:30080 local", "192.168.0.2:30080", "192.168.0.3:30080" }, fe.backends)
    end)
  end)

  describe("an invalid spec", function()
    it("with an unknown redirectMode is not programmed and is reported", function()
      local frontends, rejections = world.run(balancing, cluster{ vip_policy{ mode = "nodePort" } }, "web-global")
      assert.same({}, frontends)
      assert.same({ { kind = "BalancingPolicy", name = "web-global",
        reason = 'spec.backend.serviceEndpoint.redirectMode: "nodePort" is not podEndpoint, hostPort or nodeProxy' } },
        rejections)
    end)
  end)
end)
