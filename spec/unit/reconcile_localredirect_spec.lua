-- LocalRedirectPolicy → map entries (API.md "LocalRedirectPolicy", "Both
-- policies"). This agent runs on node-1.
local localredirect = require("balancing.reconcile.localredirect")
local fx = require("fixtures.policies.builders")
local world = require("fixtures.policies.world")

local port = fx.port

-- The node-local DNS set-up: CoreDNS behind kube-system/kube-dns, a
-- node-local-dns pod on each node, and a policy sending DNS to the local one.
local function kube_dns()
  return fx.service{ namespace = "kube-system", name = "kube-dns", cluster_ip = "10.96.0.10",
    ports = {
      { name = "dns", port = 53, protocol = "UDP", target_port = 53 },
      { name = "dns-tcp", port = 53, protocol = "TCP", target_port = 53 },
      { name = "metrics", port = 9153, protocol = "TCP", target_port = 9153 },
    } }
end

local function dns_pod(opts)
  opts.namespace = opts.namespace or "kube-system"
  opts.labels = opts.labels or { ["k8s-app"] = "node-local-dns" }
  return fx.pod(opts)
end

local function node_local_dns(opts)
  opts = opts or {}
  return fx.local_redirect{
    name = opts.name or "node-local-dns",
    id = opts.id == nil and "100" or opts.id or nil,
    service = { namespace = "kube-system", name = "kube-dns", ports = opts.service_ports },
    selector = opts.selector or { matchLabels = { ["k8s-app"] = "node-local-dns" } },
    ports = opts.ports or { port("1053", "UDP", "dns"), port("1054", "TCP", "dns-tcp") },
    node_selector = opts.node_selector,
  }
end

local function cluster(extra)
  local objects = {
    fx.node{ name = "node-1", internal_ip = "192.168.0.1", labels = { role = "edge" } },
    fx.node{ name = "node-2", internal_ip = "192.168.0.2" },
    kube_dns(),
    dns_pod{ name = "nld-a", node = "node-1", ip = "10.244.1.5" },
    dns_pod{ name = "nld-b", node = "node-2", ip = "10.244.2.5" },
  }
  for _, obj in ipairs(extra or {}) do
    objects[#objects + 1] = obj
  end
  return objects
end

describe("LocalRedirectPolicy", function()
  describe("serviceMatcher frontend", function()
    it("redirects the Service's ClusterIP ports to the selected pods on this node, by port name", function()
      local frontends = world.run(localredirect, cluster{ node_local_dns() }, "node-local-dns")
      assert.same({ "10.96.0.10:53/TCP", "10.96.0.10:53/UDP" }, world.keys(frontends))
      assert.same({ "10.244.1.5:1053 local" }, world.find(frontends, "10.96.0.10:53/UDP").backends)
      assert.same({ "10.244.1.5:1054 local" }, world.find(frontends, "10.96.0.10:53/TCP").backends)
    end)

    it("has type localRedirect, mode service, and the policy's serviceId", function()
      local frontends = world.run(localredirect, cluster{ node_local_dns() }, "node-local-dns")
      local fe = world.find(frontends, "10.96.0.10:53/UDP")
      assert.equals("localRedirect", fe.type)
      assert.equals("service", fe.mode)
      assert.equals(100, fe.id)
    end)

    it("redirects only the Service ports listed in toPorts", function()
      local policy = node_local_dns{ service_ports = { port("53", "UDP") },
        ports = { port("1053", "UDP") } }
      local frontends = world.run(localredirect, cluster{ policy }, "node-local-dns")
      assert.same({ "10.96.0.10:53/UDP" }, world.keys(frontends))
      assert.same({ "10.244.1.5:1053 local" }, frontends[1].backends)
    end)
  end)

  describe("addressMatcher frontend", function()
    it("redirects a virtual address to the selected pods on this node, with mode address", function()
      local policy = fx.local_redirect{ name = "vip", id = "7",
        address = { ip = "169.254.20.10", ports = { port("53", "UDP") } },
        selector = { matchLabels = { ["k8s-app"] = "node-local-dns" } },
        ports = { port("1053", "UDP") } }
      local frontends = world.run(localredirect, cluster{ policy }, "vip")
      assert.same({ {
        frontend = "169.254.20.10:53/UDP", type = "localRedirect", mode = "address", id = 7,
        affinity = 0, local_only = false, total = 1, local_count = 1,
        backends = { "10.244.1.5:1053 local" },
      } }, frontends)
    end)
  end)

  describe("backends", function()
    it("are all local: local_count equals total", function()
      local objects = cluster{ node_local_dns(),
        dns_pod{ name = "nld-c", node = "node-1", ip = "10.244.1.9" } }
      local fe = world.find(world.run(localredirect, objects, "node-local-dns"), "10.96.0.10:53/UDP")
      assert.equals(2, fe.total)
      assert.equals(2, fe.local_count)
      assert.same({ "10.244.1.5:1053 local", "10.244.1.9:1053 local" }, fe.backends)
    end)

    it("never include a selected pod running on another node", function()
      local objects = cluster{ node_local_dns() }
      local frontends = world.run(localredirect, objects, "node-local-dns", { node_name = "node-2" })
      assert.same({ "10.244.2.5:1053 local" }, world.find(frontends, "10.96.0.10:53/UDP").backends)
    end)

    it("are selected from pods of any namespace", function()
      local objects = cluster{ node_local_dns(),
        dns_pod{ namespace = "dns-system", name = "other", node = "node-1", ip = "10.244.1.7" } }
      local fe = world.find(world.run(localredirect, objects, "node-local-dns"), "10.96.0.10:53/UDP")
      assert.same({ "10.244.1.5:1053 local", "10.244.1.7:1053 local" }, fe.backends)
    end)

    it("skip pods that are not usable (not Running, not Ready, no IP, being deleted)", function()
      local objects = cluster{ node_local_dns(),
        dns_pod{ name = "pending", node = "node-1", ip = "10.244.1.11", phase = "Pending" },
        dns_pod{ name = "unready", node = "node-1", ip = "10.244.1.12", ready = false },
        dns_pod{ name = "no-ip", node = "node-1" },
        dns_pod{ name = "deleting", node = "node-1", ip = "10.244.1.13", deleting = true } }
      local fe = world.find(world.run(localredirect, objects, "node-local-dns"), "10.96.0.10:53/UDP")
      assert.same({ "10.244.1.5:1053 local" }, fe.backends)
    end)

    it("skip pods the endpointSelector does not select", function()
      local objects = cluster{ node_local_dns(),
        dns_pod{ name = "web", node = "node-1", ip = "10.244.1.20", labels = { app = "web" } } }
      local fe = world.find(world.run(localredirect, objects, "node-local-dns"), "10.96.0.10:53/UDP")
      assert.same({ "10.244.1.5:1053 local" }, fe.backends)
    end)

    it("give one backend for pods sharing an address (hostNetwork pods)", function()
      local objects = cluster{ node_local_dns(),
        dns_pod{ name = "host-a", namespace = "x", node = "node-1", ip = "192.168.0.1" },
        dns_pod{ name = "host-b", namespace = "x", node = "node-1", ip = "192.168.0.1" } }
      local fe = world.find(world.run(localredirect, objects, "node-local-dns"), "10.96.0.10:53/UDP")
      assert.same({ "10.244.1.5:1053 local", "192.168.0.1:1053 local" }, fe.backends)
    end)
  end)

  describe("without a local backend", function()
    it("programs no redirect entry, so the traffic resolves as the plain Service", function()
      local objects = {
        fx.node{ name = "node-1", internal_ip = "192.168.0.1" },
        kube_dns(),
        dns_pod{ name = "nld-b", node = "node-2", ip = "10.244.2.5" },
        node_local_dns(),
      }
      local frontends, rejections, entries, notices = world.run(localredirect, objects, "node-local-dns")
      assert.same({}, frontends)
      assert.same({}, rejections)
      assert.same({}, entries.loop_pods)
      -- (what inspect traceMapData shows as the reason)
      assert.same({ "not programmed: no local backend on this node (no running pod with an IPv4 address "
        .. "on node node-1 matches the backend selector)" }, world.messages(notices))
    end)
  end)

  describe("loop avoidance", function()
    it("lists the policy's backend pods on this node as loop_pods", function()
      local objects = cluster{ node_local_dns(),
        dns_pod{ name = "unready", node = "node-1", ip = "10.244.1.12", ready = false } }
      local _, _, entries = world.run(localredirect, objects, "node-local-dns")
      assert.same({ { namespace = "kube-system", name = "nld-a", uid = "uid-kube-system-nld-a" } },
        entries.loop_pods)
    end)
  end)

  describe("what it never sets", function()
    it("carries no session affinity and is never local-only, whatever the Service", function()
      local dns = kube_dns()
      dns.spec.sessionAffinity = "ClientIP"
      dns.spec.sessionAffinityConfig = { clientIP = { timeoutSeconds = 600 } }
      dns.spec.internalTrafficPolicy = "Local"
      local objects = cluster{ node_local_dns() }
      objects[3] = dns
      local fe = world.find(world.run(localredirect, objects, "node-local-dns"), "10.96.0.10:53/UDP")
      assert.equals(0, fe.affinity)
      assert.is_false(fe.local_only)
    end)
  end)

  describe("where it applies", function()
    it("programs its frontends on a node its nodeLabelSelector matches", function()
      local policy = node_local_dns{ node_selector = { matchLabels = { role = "edge" } } }
      local frontends = world.run(localredirect, cluster{ policy }, "node-local-dns")
      assert.equals(2, #frontends)
    end)

    it("programs nothing, and rejects nothing, on a node its nodeLabelSelector does not match", function()
      local policy = node_local_dns{ node_selector = { matchLabels = { role = "core" } } }
      local frontends, rejections, _, notices = world.run(localredirect, cluster{ policy }, "node-local-dns")
      assert.same({}, frontends)
      assert.same({}, rejections)
      assert.same({ "not programmed: nodeLabelSelector does not select node node-1" }, world.messages(notices))
    end)

    it("programs nothing on an agent outside the cluster (it has no local pods)", function()
      local frontends, rejections, _, notices = world.run(localredirect, cluster{ node_local_dns() },
        "node-local-dns", { out_cluster = true })
      assert.same({}, frontends)
      assert.same({}, rejections)
      assert.same({ "not programmed: a LocalRedirectPolicy has no local backends outside the cluster" },
        world.messages(notices))
    end)
  end)

  describe("entries", function()
    it("belong to the owner localRedirect/<name>", function()
      local _, _, entries = world.run(localredirect, cluster{ node_local_dns() }, "node-local-dns")
      assert.equals("localRedirect/node-local-dns", entries.owner)
    end)

    it("of a policy that no longer exists are an owner with no frontends", function()
      local frontends, rejections, entries = world.run(localredirect, cluster(), "node-local-dns")
      assert.equals("localRedirect/node-local-dns", entries.owner)
      assert.same({}, frontends)
      assert.same({}, rejections)
    end)

    it("follow a modified spec: the current object is all that counts", function()
      local store = world.store(cluster{ node_local_dns() })
      local changed = node_local_dns{ service_ports = { port("53", "TCP") }, ports = { port("2054", "TCP") } }
      assert(store:upsert(changed))
      local entries = localredirect.desired(store, world.ctx(store), "node-local-dns")
      assert.equals(1, #entries.frontends)
      local decoded = require("fixtures.services.decode").frontend(entries.frontends[1])
      assert.equals("10.96.0.10:53/TCP", decoded.frontend)
      assert.same({ "10.244.1.5:2054 local" }, decoded.backends)
    end)

    it("are sorted by address, then port, then protocol", function()
      local policy = fx.local_redirect{ name = "multi", id = "9",
        address = { ip = "169.254.20.10", ports = { port("53", "UDP", "dns"), port("53", "TCP", "dns-tcp"),
          port("8053", "TCP", "alt") } },
        selector = { matchLabels = { ["k8s-app"] = "node-local-dns" } },
        ports = { port("1053", "UDP", "dns"), port("1054", "TCP", "dns-tcp"), port("1055", "TCP", "alt") } }
      local frontends = world.run(localredirect, cluster{ policy }, "multi")
      assert.same({ "169.254.20.10:53/TCP", "169.254.20.10:53/UDP", "169.254.20.10:8053/TCP" },
        world.keys(frontends))
    end)

    it("are the same for the same store", function()
      local store = world.store(cluster{ node_local_dns(),
        dns_pod{ name = "nld-c", node = "node-1", ip = "10.244.1.9" } })
      local decode = require("fixtures.services.decode")
      local function run()
        local entries = localredirect.desired(store, world.ctx(store), "node-local-dns")
        local out = {}
        for i, fe in ipairs(entries.frontends) do
          out[i] = decode.frontend(fe)
        end
        return out, entries.loop_pods
      end
      local a, loop_a = run()
      local b, loop_b = run()
      assert.same(a, b)
      assert.same(loop_a, loop_b)
    end)
  end)

  describe("an invalid spec", function()
    it("is not programmed and is reported with the policy name and the field", function()
      local policy = node_local_dns{ ports = { port("70000", "UDP") } }
      local frontends, rejections, entries = world.run(localredirect, cluster{ policy }, "node-local-dns")
      assert.same({}, frontends)
      assert.same({}, entries.loop_pods)
      assert.same({ { kind = "LocalRedirectPolicy", name = "node-local-dns",
        reason = 'spec.backend.toPorts[0].port: "70000" is not a port (a decimal string "1".."65535")' } },
        rejections)
    end)
  end)
end)
