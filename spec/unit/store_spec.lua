local cjson = require("cjson")
local store_module = require("balancing.store")
local selector = require("balancing.selector")

-- Hand-built fixtures ---------------------------------------------------------

local function service(namespace, name, ips, ports, extra)
  local obj = {
    kind = "Service",
    metadata = { namespace = namespace, name = name, uid = "uid-" .. namespace .. "-" .. name },
    spec = { clusterIPs = ips, clusterIP = ips and ips[1], ports = ports or { { name = "http", port = 80 } } },
  }
  for k, v in pairs(extra or {}) do
    obj.spec[k] = v
  end
  return obj
end

local function slice(namespace, name, service_name)
  return {
    kind = "EndpointSlice",
    metadata = { namespace = namespace, name = name,
      labels = service_name and { ["kubernetes.io/service-name"] = service_name } or nil },
    addressType = "IPv4",
    endpoints = { { addresses = { "10.0.0.1" } } },
  }
end

local function pod(namespace, name, labels, node)
  return {
    kind = "Pod",
    metadata = { namespace = namespace, name = name, labels = labels },
    spec = { nodeName = node },
    status = { phase = "Running", podIP = "10.1.0.1" },
  }
end

local function node(name, labels)
  return { kind = "Node", metadata = { name = name, labels = labels or {} } }
end

-- PortInfos from "53/UDP" texts, each named ("udp-53"): a valid list of
-- any length.
local function ports(...)
  local out = {}
  for _, p in ipairs({ ... }) do
    local number, protocol = p:match("^(%d+)/(%u+)$")
    out[#out + 1] = { port = number, protocol = protocol, name = protocol:lower() .. "-" .. number }
  end
  return out
end

-- A LocalRedirectPolicy; frontend is { ip = ..., ports = {...} } or
-- { service = "ns/name", ports = {...} }.
local function lrp(name, frontend, match_labels, extra)
  local spec = { backend = { endpointSelector = { matchLabels = match_labels or { app = "dns" } },
    toPorts = ports("53/UDP") } }
  if frontend.ip then
    spec.frontend = { addressMatcher = { ip = frontend.ip, toPorts = frontend.ports } }
  else
    local namespace, service_name = frontend.service:match("^(.-)/(.*)$")
    spec.frontend = { serviceMatcher = { namespace = namespace, serviceName = service_name,
      toPorts = frontend.ports } }
  end
  local obj = { kind = "LocalRedirectPolicy", metadata = { name = name }, spec = spec }
  for k, v in pairs(extra or {}) do
    obj.metadata[k] = v
  end
  return obj
end

local function bp(name, frontend, match_labels, mode, extra)
  local obj = lrp(name, frontend, match_labels, extra)
  obj.kind = "BalancingPolicy"
  obj.spec.backend = { serviceEndpoint = { endpointSelector = { matchLabels = match_labels or { app = "dns" } },
    toPorts = ports("53/UDP"), redirectMode = mode } }
  return obj
end

local function new_store(...)
  local s = store_module.new({ node_name = "node-1" })
  for _, obj in ipairs({ ... }) do
    assert(s:upsert(obj))
  end
  s:take_dirty()
  return s
end

local function names(list)
  local out = {}
  for i, obj in ipairs(list) do
    out[i] = (obj.metadata.namespace and obj.metadata.namespace ~= "" and (obj.metadata.namespace .. "/") or "")
      .. obj.metadata.name
  end
  return out
end

local function dirty_list(s)
  local out = {}
  for owner in pairs(s:take_dirty()) do
    out[#out + 1] = owner
  end
  table.sort(out)
  return out
end

-- The cache ------------------------------------------------------------------------

describe("store: the cache", function()
  it("keeps an object and gives it back by kind, namespace and name", function()
    local svc = service("default", "web", { "10.96.0.1" })
    local s = new_store(svc)
    assert.same(svc, s:get("Service", "default", "web"))
    assert.is_nil(s:get("Service", "other", "web"))
  end)

  it("keeps cluster-scoped kinds under namespace \"\"", function()
    local n = node("node-2")
    local p = lrp("dns", { ip = "169.254.20.10", ports = ports("53/UDP") })
    local s = new_store(n, p)
    assert.equals(n, s:get("Node", "", "node-2"))
    assert.equals(p, s:get("LocalRedirectPolicy", "", "dns"))
    assert.equals(n, s:node("node-2"))
  end)

  it("lists a kind sorted by namespace, then name", function()
    local s = new_store(service("b", "x", { "10.96.0.1" }), service("a-b", "z", { "10.96.0.2" }),
      service("a", "y", { "10.96.0.3" }), service("a", "b", { "10.96.0.4" }))
    assert.same({ "a/b", "a/y", "a-b/z", "b/x" }, names(s:list("Service")))
  end)

  it("gives a fresh array from list", function()
    local s = new_store(service("a", "x", { "10.96.0.1" }))
    local first = s:list("Service")
    first[1] = nil
    assert.equals(1, #s:list("Service"))
  end)

  it("lists an unknown kind as empty", function()
    assert.same({}, new_store():list("ConfigMap"))
  end)

  it("treats a MODIFIED for an unknown object as ADDED", function()
    local s = new_store()
    assert.is_true(s:ingest({ type = "MODIFIED", object = service("default", "web", { "10.96.0.1" }) }))
    assert.is_not_nil(s:get("Service", "default", "web"))
    assert.same({ "service/default/web" }, dirty_list(s))
  end)

  it("replaces an object on MODIFIED", function()
    local s = new_store(service("default", "web", { "10.96.0.1" }))
    local newer = service("default", "web", { "10.96.0.2" })
    assert.is_true(s:ingest({ type = "MODIFIED", object = newer }))
    assert.same(newer, s:get("Service", "default", "web"))
    assert.equals(1, #s:list("Service"))
  end)

  it("removes an object on DELETED", function()
    local s = new_store(service("default", "web", { "10.96.0.1" }))
    assert.is_true(s:ingest({ type = "DELETED", object = service("default", "web", { "10.96.0.1" }) }))
    assert.is_nil(s:get("Service", "default", "web"))
    assert.same({}, s:list("Service"))
  end)

  it("takes a DELETED for an unknown object as harmless", function()
    local s = new_store()
    assert.is_true(s:ingest({ type = "DELETED", object = service("default", "ghost", { "10.96.0.1" }) }))
    assert.same({}, dirty_list(s))
  end)

  it("ignores a BOOKMARK event", function()
    assert.is_true(new_store():ingest({ type = "BOOKMARK", object = { kind = "Service" } }))
  end)

  it("refuses an event of an unknown type", function()
    local ok, err = new_store():ingest({ type = "ERROR", object = {} })
    assert.is_nil(ok)
    assert.matches('type "ERROR"', err, 1, true)
  end)

  it("reads decoded JSON with nulls as absent fields", function()
    local s = new_store()
    assert.is_true(s:upsert(cjson.decode([[{"kind":"Service","metadata":{"namespace":"default","name":"web",
      "labels":null,"uid":null},"spec":{"clusterIPs":null,"clusterIP":"10.96.0.7","ports":[{"port":80}]}}]])))
    assert.is_true(s:upsert(cjson.decode([[{"kind":"Pod","metadata":{"namespace":"default","name":"p",
      "labels":null},"spec":{"nodeName":null}}]])))
    assert.same({ "default/web" }, names(s:services_by_cluster_ip("10.96.0.7")))
    assert.equals(1, #s:list("Pod"))
  end)

  describe("refuses a bad object, naming what is missing, and stays unchanged", function()
    local function refused(obj, pattern)
      local s = new_store(service("default", "web", { "10.96.0.1" }))
      local ok, err = s:upsert(obj)
      assert.is_nil(ok)
      assert.matches(pattern, err, 1, true)
      assert.equals(1, #s:list("Service"))
      assert.same({}, dirty_list(s))
      local deleted, delete_err = s:delete(obj)
      assert.is_nil(deleted)
      assert.matches(pattern, delete_err, 1, true)
      assert.equals(1, #s:list("Service"))
    end

    it("an object without kind", function()
      refused({ metadata = { namespace = "default", name = "web" } }, 'object "web": kind is missing')
    end)

    it("an object of an unknown kind", function()
      refused({ kind = "ConfigMap", metadata = { namespace = "default", name = "web" } },
        'object "web": kind "ConfigMap" is not one of')
    end)

    it("an object without metadata.name", function()
      refused({ kind = "Service", metadata = { namespace = "default" } }, "Service: metadata.name is missing")
    end)

    it("a namespaced object without metadata.namespace", function()
      refused({ kind = "Service", metadata = { name = "web" } }, 'Service "web": metadata.namespace is missing')
    end)

    it("a namespaced object whose namespace is JSON null", function()
      refused({ kind = "Pod", metadata = { name = "p", namespace = cjson.null } },
        'Pod "p": metadata.namespace is missing')
    end)

    it("something that is not an object", function()
      refused("Service/web", "not a table")
    end)
  end)

  it("accepts a cluster-scoped object without namespace", function()
    local s = new_store()
    assert.is_true(s:upsert(node("node-9")))
    assert.is_true(s:upsert(lrp("x", { ip = "1.1.1.1", ports = ports("53/UDP") })))
  end)
end)

-- Indexes --------------------------------------------------------------------------

describe("store: indexes", function()
  it("finds the EndpointSlices of a Service by the kubernetes.io/service-name label", function()
    local s = new_store(slice("default", "web-b", "web"), slice("default", "web-a", "web"),
      slice("default", "api-a", "api"), slice("other", "web-c", "web"), slice("default", "orphan"))
    assert.same({ "default/web-a", "default/web-b" }, names(s:endpoint_slices_of("default", "web")))
    assert.same({ "other/web-c" }, names(s:endpoint_slices_of("other", "web")))
    assert.same({}, s:endpoint_slices_of("default", "nothing"))
  end)

  it("moves an EndpointSlice whose service-name label changed", function()
    local s = new_store(slice("default", "s1", "web"))
    s:upsert(slice("default", "s1", "api"))
    assert.same({}, s:endpoint_slices_of("default", "web"))
    assert.same({ "default/s1" }, names(s:endpoint_slices_of("default", "api")))
  end)

  it("drops a deleted EndpointSlice from its Service", function()
    local s = new_store(slice("default", "s1", "web"), slice("default", "s2", "web"))
    s:delete(slice("default", "s1", "web"))
    assert.same({ "default/s2" }, names(s:endpoint_slices_of("default", "web")))
  end)

  it("finds Services by every ClusterIP", function()
    local s = new_store(service("default", "dual", { "10.96.0.1", "10.96.0.2" }),
      service("default", "single", { "10.96.0.3" }))
    assert.same({ "default/dual" }, names(s:services_by_cluster_ip("10.96.0.2")))
    assert.same({ "default/single" }, names(s:services_by_cluster_ip("10.96.0.3")))
  end)

  it("falls back to spec.clusterIP when clusterIPs is absent", function()
    local svc = service("default", "old", nil)
    svc.spec.clusterIP = "10.96.0.9"
    assert.same({ "default/old" }, names(new_store(svc):services_by_cluster_ip("10.96.0.9")))
  end)

  it("does not index a headless Service's None", function()
    local s = new_store(service("default", "headless", { "None" }))
    assert.same({}, s:services_by_cluster_ip("None"))
  end)

  it("moves a Service whose ClusterIP changed", function()
    local s = new_store(service("default", "web", { "10.96.0.1" }))
    s:upsert(service("default", "web", { "10.96.0.2" }))
    assert.same({}, s:services_by_cluster_ip("10.96.0.1"))
    assert.same({ "default/web" }, names(s:services_by_cluster_ip("10.96.0.2")))
  end)

  it("finds the pods on a node by spec.nodeName", function()
    local s = new_store(pod("a", "p1", {}, "node-1"), pod("b", "p2", {}, "node-2"), pod("a", "p0", {}, "node-1"),
      pod("a", "pending", {}, nil))
    assert.same({ "a/p0", "a/p1" }, names(s:pods_on_node("node-1")))
    assert.same({ "b/p2" }, names(s:pods_on_node("node-2")))
  end)

  it("drops a deleted pod from its node", function()
    local s = new_store(pod("a", "p1", {}, "node-1"))
    s:delete(pod("a", "p1", {}, "node-1"))
    assert.same({}, s:pods_on_node("node-1"))
  end)

  describe("pods_matching", function()
    local s
    before_each(function()
      s = new_store(
        pod("kube-system", "dns-1", { app = "dns", zone = "a" }, "node-1"),
        pod("kube-system", "dns-2", { app = "dns", zone = "b" }, "node-2"),
        pod("default", "web-1", { app = "web" }, "node-1"),
        pod("default", "bare", nil, "node-1"))
    end)

    it("matches by matchLabels across namespaces, sorted", function()
      assert.same({ "kube-system/dns-1", "kube-system/dns-2" },
        names(s:pods_matching(selector.compile({ matchLabels = { app = "dns" } }))))
    end)

    it("applies every expression to the candidates", function()
      assert.same({ "kube-system/dns-2" }, names(s:pods_matching(selector.compile({
        matchLabels = { app = "dns" },
        matchExpressions = { { key = "zone", operator = "NotIn", values = { "a" } } } }))))
    end)

    it("matches by In over several values", function()
      assert.same({ "default/web-1", "kube-system/dns-1", "kube-system/dns-2" }, names(s:pods_matching(
        selector.compile({ matchExpressions = { { key = "app", operator = "In", values = { "dns", "web" } } } }))))
    end)

    it("matches by Exists", function()
      assert.same({ "kube-system/dns-1", "kube-system/dns-2" }, names(s:pods_matching(
        selector.compile({ matchExpressions = { { key = "zone", operator = "Exists" } } }))))
    end)

    it("matches NotIn alone against every pod, including pods without the key", function()
      assert.same({ "default/bare", "default/web-1" }, names(s:pods_matching(
        selector.compile({ matchExpressions = { { key = "app", operator = "NotIn", values = { "dns" } } } }))))
    end)

    it("matches every pod with the empty selector", function()
      assert.equals(4, #s:pods_matching(selector.compile({})))
    end)

    it("follows a pod whose labels changed", function()
      s:upsert(pod("default", "web-1", { app = "dns" }, "node-1"))
      assert.same({ "default/web-1", "kube-system/dns-1", "kube-system/dns-2" },
        names(s:pods_matching(selector.compile({ matchLabels = { app = "dns" } }))))
      assert.same({}, s:pods_matching(selector.compile({ matchLabels = { app = "web" } })))
    end)

    it("unindexes a pod that was changed in place and upserted again", function()
      local p = s:get("Pod", "default", "web-1")
      p.metadata.labels = { app = "api" }
      p.spec.nodeName = "node-3"
      s:upsert(p)
      assert.same({}, s:pods_matching(selector.compile({ matchLabels = { app = "web" } })))
      assert.same({ "default/web-1" }, names(s:pods_matching(selector.compile({ matchLabels = { app = "api" } }))))
      assert.same({ "default/web-1" }, names(s:pods_on_node("node-3")))
      assert.same({ "default/bare", "kube-system/dns-1" }, names(s:pods_on_node("node-1")))
    end)
  end)

  describe("policies by frontend", function()
    it("indexes an addressMatcher by ip and every toPort", function()
      local s = new_store(lrp("dns", { ip = "169.254.20.10", ports = ports("53/UDP", "53/TCP") }))
      assert.same({ "dns" }, names(s:policies_claiming("LocalRedirectPolicy", "169.254.20.10:53/UDP")))
      assert.same({ "dns" }, names(s:policies_claiming("LocalRedirectPolicy", "169.254.20.10:53/TCP")))
      assert.same({}, s:policies_claiming("BalancingPolicy", "169.254.20.10:53/UDP"))
    end)

    it("takes a toPort without protocol as TCP", function()
      local s = new_store(lrp("x", { ip = "10.0.0.1", ports = { { port = "80" } } }))
      assert.same({ "x" }, names(s:policies_claiming("LocalRedirectPolicy", "10.0.0.1:80/TCP")))
    end)

    it("indexes a serviceMatcher by the Service's ClusterIPs and all its ports when toPorts is empty", function()
      local s = new_store(
        service("kube-system", "kube-dns", { "10.96.0.10", "10.96.0.11" },
          { { name = "dns", port = 53, protocol = "UDP" }, { name = "dns-tcp", port = 53, protocol = "TCP" } }),
        lrp("dns", { service = "kube-system/kube-dns" }))
      assert.same({ "10.96.0.10:53/TCP", "10.96.0.10:53/UDP", "10.96.0.11:53/TCP", "10.96.0.11:53/UDP" },
        s:policy_frontend_keys("LocalRedirectPolicy", "dns"))
    end)

    it("indexes a serviceMatcher by the listed toPorts only", function()
      local s = new_store(
        service("kube-system", "kube-dns", { "10.96.0.10" },
          { { name = "dns", port = 53, protocol = "UDP" }, { name = "dns-tcp", port = 53, protocol = "TCP" } }),
        lrp("dns", { service = "kube-system/kube-dns", ports = { { port = "53", protocol = "UDP" } } }))
      assert.same({ "10.96.0.10:53/UDP" }, s:policy_frontend_keys("LocalRedirectPolicy", "dns"))
    end)

    it("indexes a serviceMatcher's toPort by name too when it and the Service port both have one", function()
      local s = new_store(
        service("kube-system", "kube-dns", { "10.96.0.10" }, { { name = "dns", port = 53, protocol = "UDP" } }),
        lrp("named", { service = "kube-system/kube-dns", ports = { { port = "53", protocol = "UDP", name = "dns" } } }),
        lrp("other", { service = "kube-system/kube-dns", ports = { { port = "53", protocol = "UDP", name = "x" } } }))
      assert.same({ "10.96.0.10:53/UDP" }, s:policy_frontend_keys("LocalRedirectPolicy", "named"))
      assert.same({}, s:policy_frontend_keys("LocalRedirectPolicy", "other"))
    end)

    it("indexes a serviceMatcher once its Service appears", function()
      local s = new_store(lrp("dns", { service = "kube-system/kube-dns" }))
      assert.same({}, s:policy_frontend_keys("LocalRedirectPolicy", "dns"))
      s:upsert(service("kube-system", "kube-dns", { "10.96.0.10" }, { { port = 53, protocol = "UDP" } }))
      assert.same({ "dns" }, names(s:policies_claiming("LocalRedirectPolicy", "10.96.0.10:53/UDP")))
    end)

    it("re-indexes a serviceMatcher when the Service's ClusterIP changes", function()
      local s = new_store(service("kube-system", "kube-dns", { "10.96.0.10" }, { { port = 53, protocol = "UDP" } }),
        lrp("dns", { service = "kube-system/kube-dns" }))
      s:upsert(service("kube-system", "kube-dns", { "10.96.0.20" }, { { port = 53, protocol = "UDP" } }))
      assert.same({}, s:policies_claiming("LocalRedirectPolicy", "10.96.0.10:53/UDP"))
      assert.same({ "dns" }, names(s:policies_claiming("LocalRedirectPolicy", "10.96.0.20:53/UDP")))
    end)

    it("drops a serviceMatcher's frontends when the Service is deleted", function()
      local svc = service("kube-system", "kube-dns", { "10.96.0.10" }, { { port = 53, protocol = "UDP" } })
      local s = new_store(svc, lrp("dns", { service = "kube-system/kube-dns" }))
      s:delete(svc)
      assert.same({}, s:policies_claiming("LocalRedirectPolicy", "10.96.0.10:53/UDP"))
    end)

    it("lists the claimants oldest first: creationTimestamp, then name", function()
      local fe = { ip = "10.0.0.1", ports = ports("80/TCP") }
      local s = new_store(
        bp("zeta", fe, nil, nil, { creationTimestamp = "2024-01-01T00:00:00Z" }),
        bp("beta", fe, nil, nil, { creationTimestamp = "2024-02-01T00:00:00Z" }),
        bp("alpha", fe, nil, nil, { creationTimestamp = "2024-02-01T00:00:00Z" }),
        bp("manifest", fe))
      assert.same({ "zeta", "alpha", "beta", "manifest" },
        names(s:policies_claiming("BalancingPolicy", "10.0.0.1:80/TCP")))
    end)

    it("drops a deleted policy's frontends", function()
      local p = lrp("dns", { ip = "169.254.20.10", ports = ports("53/UDP") })
      local s = new_store(p)
      s:delete(p)
      assert.same({}, s:policies_claiming("LocalRedirectPolicy", "169.254.20.10:53/UDP"))
    end)

    it("indexes the checked spec: a toPort's number, not its text", function()
      local s = new_store(lrp("x", { ip = "10.0.0.1", ports = { { port = "0080", protocol = "TCP" } } }))
      assert.same({ "10.0.0.1:80/TCP" }, s:policy_frontend_keys("LocalRedirectPolicy", "x"))
    end)

    it("indexes a policy whose spec is invalid under nothing (it programs nothing)", function()
      local s = new_store(lrp("bad", { ip = "10.0.0.300", ports = ports("53/UDP") }),
        lrp("bad-port", { ip = "10.0.0.1", ports = ports("99999/UDP") }))
      assert.same({}, s:policy_frontend_keys("LocalRedirectPolicy", "bad"))
      assert.same({}, s:policies_claiming("LocalRedirectPolicy", "10.0.0.1:99999/UDP"))
    end)
  end)

  describe("policies, read once at ingest", function()
    it("keeps the checked spec (balancing.policy_spec) of a valid policy", function()
      local s = new_store(bp("web", { ip = "10.0.0.1", ports = ports("80/TCP") }, { app = "web" }, "hostPort"))
      local spec, reason = s:policy_spec("BalancingPolicy", "web")
      assert.is_nil(reason)
      assert.equals("10.0.0.1", spec.frontend.ip)
      assert.equals("hostPort", spec.backend.mode)
      assert.same({ addresses = { "10.0.0.1" },
        ports = { { port = 80, protocol = "TCP", name = "tcp-80",
          path = "spec.frontend.addressMatcher.toPorts[0]" } } },
        s:policy_claim("BalancingPolicy", "web"))
    end)

    it("keeps the reason, naming the field, of an invalid one", function()
      local s = new_store(lrp("bad", { ip = "10.0.0.300", ports = ports("53/UDP") }))
      assert.same({ nil, 'spec.frontend.addressMatcher.ip: "10.0.0.300" is not an IPv4 address' },
        { s:policy_spec("LocalRedirectPolicy", "bad") })
      assert.same({ addresses = {}, ports = {} }, s:policy_claim("LocalRedirectPolicy", "bad"))
    end)

    it("has no spec for a policy it does not have", function()
      local s = new_store()
      assert.is_nil(s:policy_spec("LocalRedirectPolicy", "gone"))
      assert.same({ nil, "LocalRedirectPolicy gone: not in the store" },
        { s:policy_id("LocalRedirectPolicy", "gone") })
    end)

    it("claims a serviceMatcher's frontends from the Service as the store reads it (service_spec)", function()
      local s = new_store(service("kube-system", "kube-dns", { "10.96.0.010" },
          { { name = "dns", port = 53, protocol = "UDP" }, { name = "sctp", port = 9999, protocol = "SCTP" } }),
        lrp("dns", { service = "kube-system/kube-dns" }))
      assert.same({ addresses = { "10.96.0.10" }, ports = { { port = 53, protocol = "UDP", name = "dns" } } },
        s:policy_claim("LocalRedirectPolicy", "dns"))
    end)

    it("settles a policy's ID at ingest, before any reconcile", function()
      local s = new_store(lrp("a", { ip = "1.1.1.1", ports = ports("53/UDP") }),
        bp("b", { ip = "2.2.2.2", ports = ports("53/UDP") }, nil, nil,
          { annotations = { ["balancing.elf.io/serviceId"] = "7" } }))
      local id, provisional = s:policy_id("LocalRedirectPolicy", "a")
      assert.is_true(provisional)
      assert.same({ kind = "LocalRedirectPolicy", namespace = "", name = "a" }, s.ids:lookup(id))
      assert.same({ 7, false }, { s:policy_id("BalancingPolicy", "b") })
    end)
  end)

  describe("service IDs", function()
    it("gives a Service the same ID across changes", function()
      local s = new_store(service("default", "web", { "10.96.0.1" }))
      local id = s.ids:service_id(s:get("Service", "default", "web"))
      s:upsert(service("default", "web", { "10.96.0.2" }))
      assert.equals(id, s.ids:service_id(s:get("Service", "default", "web")))
      assert.same({ kind = "Service", namespace = "default", name = "web" }, s.ids:lookup(id))
    end)

    it("releases a deleted Service's ID", function()
      local svc = service("default", "web", { "10.96.0.1" })
      local s = new_store(svc)
      local id = s.ids:service_id(svc)
      s:delete(svc)
      assert.is_nil(s.ids:lookup(id))
    end)
  end)
end)

-- Dirty owners ----------------------------------------------------------------------

describe("store: dirty owners", function()
  it("take_dirty returns the set and clears it", function()
    local s = store_module.new({ node_name = "node-1" })
    s:upsert(service("default", "web", { "10.96.0.1" }))
    assert.same({ ["service/default/web"] = true }, s:take_dirty())
    assert.same({}, s:take_dirty())
  end)

  it("mark_dirty adds an owner by hand", function()
    local s = new_store()
    s:mark_dirty("balancing/x")
    assert.same({ "balancing/x" }, dirty_list(s))
  end)

  describe("a Service", function()
    it("marks its own owner", function()
      local s = new_store(service("default", "web", { "10.96.0.1" }), service("default", "api", { "10.96.0.2" }))
      s:upsert(service("default", "web", { "10.96.0.3" }))
      assert.same({ "service/default/web" }, dirty_list(s))
    end)

    it("marks its own owner when deleted", function()
      local s = new_store(service("default", "web", { "10.96.0.1" }))
      s:delete(service("default", "web", { "10.96.0.1" }))
      assert.same({ "service/default/web" }, dirty_list(s))
    end)

    it("marks the policies whose serviceMatcher names it, and no other", function()
      local s = new_store(service("kube-system", "kube-dns", { "10.96.0.10" }, { { port = 53, protocol = "UDP" } }),
        lrp("dns", { service = "kube-system/kube-dns" }),
        bp("global-dns", { service = "kube-system/kube-dns" }),
        lrp("other", { service = "default/web" }),
        lrp("vip", { ip = "169.254.0.1", ports = ports("53/UDP") }))
      local changed = service("kube-system", "kube-dns", { "10.96.0.10" }, { { port = 53, protocol = "UDP" } })
      changed.metadata.labels = { changed = "yes" }
      s:upsert(changed)
      assert.same({ "balancing/global-dns", "localRedirect/dns", "service/kube-system/kube-dns" }, dirty_list(s))
    end)

    it("marks the policy that names it before it exists, when it is created", function()
      local s = new_store(lrp("dns", { service = "kube-system/kube-dns" }))
      s:upsert(service("kube-system", "kube-dns", { "10.96.0.10" }, { { port = 53, protocol = "UDP" } }))
      assert.same({ "localRedirect/dns", "service/kube-system/kube-dns" }, dirty_list(s))
    end)

    it("marks the policies claiming a frontend a serviceMatcher gains through it", function()
      local s = new_store(service("kube-system", "kube-dns", { "10.96.0.10" }, { { port = 53, protocol = "UDP" } }),
        lrp("by-service", { service = "kube-system/kube-dns" }),
        lrp("by-address", { ip = "10.96.0.20", ports = ports("53/UDP") }),
        lrp("unrelated", { ip = "10.96.0.30", ports = ports("53/UDP") }))
      s:upsert(service("kube-system", "kube-dns", { "10.96.0.20" }, { { port = 53, protocol = "UDP" } }))
      assert.same({ "localRedirect/by-address", "localRedirect/by-service", "service/kube-system/kube-dns" },
        dirty_list(s))
    end)
  end)

  describe("an EndpointSlice", function()
    it("marks only its Service", function()
      local s = new_store(service("default", "web", { "10.96.0.1" }), service("default", "api", { "10.96.0.2" }),
        slice("default", "web-1", "web"), lrp("dns", { service = "default/web" }))
      local changed = slice("default", "web-1", "web")
      changed.metadata.generation = 2
      s:upsert(changed)
      assert.same({ "service/default/web" }, dirty_list(s))
    end)

    it("marks its Service when deleted", function()
      local s = new_store(slice("default", "web-1", "web"))
      s:delete(slice("default", "web-1", "web"))
      assert.same({ "service/default/web" }, dirty_list(s))
    end)

    it("marks the old and the new Service when its label changed", function()
      local s = new_store(slice("default", "s1", "web"))
      s:upsert(slice("default", "s1", "api"))
      assert.same({ "service/default/api", "service/default/web" }, dirty_list(s))
    end)

    it("marks nothing without the service-name label", function()
      local s = new_store()
      s:upsert(slice("default", "orphan"))
      assert.same({}, dirty_list(s))
    end)

    it("is a Service in its own namespace", function()
      local s = new_store()
      s:upsert(slice("team-a", "s1", "web"))
      assert.same({ "service/team-a/web" }, dirty_list(s))
    end)
  end)

  describe("a Pod", function()
    local base
    before_each(function()
      base = {
        lrp("dns", { ip = "169.254.20.10", ports = ports("53/UDP") }, { app = "dns" }),
        lrp("web", { ip = "169.254.20.11", ports = ports("80/TCP") }, { app = "web" }),
        bp("global-dns", { ip = "10.0.0.53", ports = ports("53/UDP") }, { app = "dns" }),
      }
    end)

    it("marks the LocalRedirectPolicy whose selector matches it, on this node", function()
      local s = new_store(unpack(base))
      s:upsert(pod("kube-system", "dns-1", { app = "dns" }, "node-1"))
      assert.same({ "balancing/global-dns", "localRedirect/dns" }, dirty_list(s))
    end)

    it("marks the LocalRedirectPolicy whose selector matched it before the change", function()
      local s = new_store(pod("kube-system", "dns-1", { app = "dns" }, "node-1"), unpack(base))
      s:upsert(pod("kube-system", "dns-1", { app = "other" }, "node-1"))
      assert.same({ "balancing/global-dns", "localRedirect/dns" }, dirty_list(s))
    end)

    it("marks the policies that matched it when it is deleted", function()
      local s = new_store(pod("kube-system", "dns-1", { app = "dns" }, "node-1"), unpack(base))
      s:delete(pod("kube-system", "dns-1", { app = "dns" }, "node-1"))
      assert.same({ "balancing/global-dns", "localRedirect/dns" }, dirty_list(s))
    end)

    it("does not mark a LocalRedirectPolicy for a pod on another node", function()
      local s = new_store(unpack(base))
      s:upsert(pod("kube-system", "dns-2", { app = "dns" }, "node-2"))
      assert.same({ "balancing/global-dns" }, dirty_list(s))
    end)

    it("marks a LocalRedirectPolicy when a matching pod is scheduled onto this node", function()
      local s = new_store(pod("kube-system", "dns-1", { app = "dns" }, nil), unpack(base))
      s:upsert(pod("kube-system", "dns-1", { app = "dns" }, "node-1"))
      assert.same({ "balancing/global-dns", "localRedirect/dns" }, dirty_list(s))
    end)

    it("marks no policy whose selector matches neither before nor after", function()
      local s = new_store(unpack(base))
      s:upsert(pod("default", "api-1", { app = "api" }, "node-1"))
      assert.same({}, dirty_list(s))
    end)

    it("marks a policy whose selector has only expressions", function()
      local p = lrp("expr", { ip = "169.254.20.12", ports = ports("53/UDP") })
      p.spec.backend.endpointSelector = {
        matchExpressions = { { key = "tier", operator = "In", values = { "edge" } } } }
      local s = new_store(p)
      s:upsert(pod("default", "e1", { tier = "edge" }, "node-1"))
      assert.same({ "localRedirect/expr" }, dirty_list(s))
    end)

    it("marks no BalancingPolicy with an addressEndpoint backend", function()
      local fixed = bp("fixed", { ip = "10.0.0.9", ports = ports("80/TCP") })
      fixed.spec.backend = { addressEndpoint = { addresses = { "192.0.2.1" }, toPorts = ports("80/TCP") } }
      local s = new_store(fixed)
      s:upsert(pod("default", "any", { app = "dns" }, "node-1"))
      assert.same({}, dirty_list(s))
    end)

    it("marks no Service", function()
      local s = new_store(service("default", "web", { "10.96.0.1" }), slice("default", "web-1", "web"))
      s:upsert(pod("default", "web-1", { app = "web" }, "node-1"))
      assert.same({}, dirty_list(s))
    end)

    it("follows a policy whose selector changed", function()
      local s = new_store(unpack(base))
      s:upsert(lrp("dns", { ip = "169.254.20.10", ports = ports("53/UDP") }, { app = "coredns" }))
      s:take_dirty()
      s:upsert(pod("kube-system", "dns-1", { app = "dns" }, "node-1"))
      assert.same({ "balancing/global-dns" }, dirty_list(s))
      s:upsert(pod("kube-system", "core-1", { app = "coredns" }, "node-1"))
      assert.same({ "localRedirect/dns" }, dirty_list(s))
    end)
  end)

  describe("a Node", function()
    local function fixtures()
      return new_store(
        node("node-1"), node("node-2"),
        service("default", "web", { "10.96.0.1" }),
        lrp("dns", { ip = "169.254.20.10", ports = ports("53/UDP") }),
        bp("pods", { ip = "10.0.0.1", ports = ports("80/TCP") }, nil, "podEndpoint"),
        bp("host", { ip = "10.0.0.2", ports = ports("80/TCP") }, nil, "hostPort"),
        bp("proxy", { ip = "10.0.0.3", ports = ports("80/TCP") }, nil, "nodeProxy"))
    end

    it("of another node marks the node tables and the hostPort and nodeProxy BalancingPolicies", function()
      local s = fixtures()
      s:upsert(node("node-2", { zone = "b" }))
      assert.same({ "balancing/host", "balancing/proxy", "node" }, dirty_list(s))
    end)

    it("of another node, deleted, marks the same", function()
      local s = fixtures()
      s:delete(node("node-2"))
      assert.same({ "balancing/host", "balancing/proxy", "node" }, dirty_list(s))
    end)

    it("of this agent's node marks every owner", function()
      local s = fixtures()
      s:upsert(node("node-1", { ["topology.kubernetes.io/zone"] = "a" }))
      assert.same({ "balancing/host", "balancing/pods", "balancing/proxy", "localRedirect/dns", "node",
        "service/default/web" }, dirty_list(s))
    end)

    it("of this agent's node: a status update that changes nothing it reads (a kubelet's) marks nothing; "
      .. "an address every owner; an annotation the node tables and node-mode policies",
      function()
        local s = fixtures()
        local heartbeat = node("node-1")
        heartbeat.metadata.resourceVersion = "2001" -- a new version: only trimmed-away fields moved
        s:upsert(heartbeat)
        assert.same({}, dirty_list(s))
        -- and what it reads does count: an address, an annotation
        local moved = node("node-1")
        moved.status = { addresses = { { type = "InternalIP", address = "192.168.1.7" } } }
        s:upsert(moved)
        assert.equals(6, #dirty_list(s))
        -- its annotations (its own ID, its proxy IP) are the node tables' and the node-mode
        -- policies' business only, as another node's are: no round over every Service
        local annotated = node("node-1")
        annotated.status = moved.status
        annotated.metadata.annotations = { ["balancing.elf.io/nodeId"] = "7" }
        s:upsert(annotated)
        assert.same({ "balancing/host", "balancing/proxy", "node" }, dirty_list(s))
      end)

    it("stops marking a BalancingPolicy that left nodeProxy mode", function()
      local s = fixtures()
      s:upsert(bp("proxy", { ip = "10.0.0.3", ports = ports("80/TCP") }, nil, "podEndpoint"))
      s:take_dirty()
      s:upsert(node("node-2", { zone = "c" }))
      assert.same({ "balancing/host", "node" }, dirty_list(s))
    end)
  end)

  describe("a policy", function()
    it("marks its own owner", function()
      local s = new_store(lrp("other", { ip = "169.254.20.99", ports = ports("53/UDP") }))
      s:upsert(lrp("dns", { ip = "169.254.20.10", ports = ports("53/UDP") }))
      assert.same({ "localRedirect/dns" }, dirty_list(s))
    end)

    it("marks the policies of the same kind claiming one of its frontends", function()
      local fe = { ip = "169.254.20.10", ports = ports("53/UDP") }
      local s = new_store(lrp("a", fe), bp("b", fe), lrp("c", { ip = "169.254.20.10", ports = ports("53/TCP") }))
      s:upsert(lrp("new", fe))
      assert.same({ "localRedirect/a", "localRedirect/new" }, dirty_list(s))
    end)

    it("marks the policies that claim a frontend it claimed before the change", function()
      local s = new_store(lrp("a", { ip = "169.254.20.10", ports = ports("53/UDP") }),
        lrp("b", { ip = "169.254.20.10", ports = ports("53/UDP") }))
      s:upsert(lrp("b", { ip = "169.254.20.99", ports = ports("53/UDP") }))
      assert.same({ "localRedirect/a", "localRedirect/b" }, dirty_list(s))
    end)

    it("marks the claimants of its frontends when deleted", function()
      local s = new_store(bp("a", { ip = "10.0.0.1", ports = ports("80/TCP") }),
        bp("b", { ip = "10.0.0.1", ports = ports("80/TCP") }))
      s:delete(bp("b", { ip = "10.0.0.1", ports = ports("80/TCP") }))
      assert.same({ "balancing/a", "balancing/b" }, dirty_list(s))
    end)

    it("marks the policies sharing its serviceId annotation, of either kind", function()
      local annotated = { annotations = { ["balancing.elf.io/serviceId"] = "42" } }
      local s = new_store(lrp("a", { ip = "1.1.1.1", ports = ports("53/UDP") }, nil, annotated),
        bp("b", { ip = "2.2.2.2", ports = ports("53/UDP") }, nil, nil, annotated),
        lrp("c", { ip = "3.3.3.3", ports = ports("53/UDP") }))
      s:delete(lrp("a", { ip = "1.1.1.1", ports = ports("53/UDP") }, nil, annotated))
      assert.same({ "balancing/b", "localRedirect/a" }, dirty_list(s))
    end)

    it("marks the policy whose provisional ID its serviceId annotation takes (that policy's ID changes)", function()
      local s = new_store(lrp("a", { ip = "1.1.1.1", ports = ports("53/UDP") }),
        lrp("c", { ip = "3.3.3.3", ports = ports("53/UDP") }))
      local provisional = assert(s:policy_id("LocalRedirectPolicy", "a"))
      s:upsert(bp("b", { ip = "2.2.2.2", ports = ports("53/UDP") }, nil, nil,
        { annotations = { ["balancing.elf.io/serviceId"] = tostring(provisional) } }))
      assert.same({ "balancing/b", "localRedirect/a" }, dirty_list(s))
      -- and the ID has already changed: reconcile only reads it
      local id, is_provisional = s:policy_id("LocalRedirectPolicy", "a")
      assert.is_true(is_provisional)
      assert.are_not.equal(provisional, id)
      assert.equals(provisional, s:policy_id("BalancingPolicy", "b"))
    end)
  end)

  it("marks nothing for an object seen again at the same resourceVersion", function()
    local function versioned()
      local svc = service("default", "web", { "10.96.0.1" })
      svc.metadata.resourceVersion = "100"
      return svc
    end
    local s = new_store(versioned())
    assert.is_true(s:upsert(versioned()))
    assert.same({}, dirty_list(s))
    local newer = versioned()
    newer.metadata.resourceVersion = "101"
    s:upsert(newer)
    assert.same({ "service/default/web" }, dirty_list(s))
  end)
end)

-- Scale ------------------------------------------------------------------------------

describe("store: scale", function()
  -- The reconcile benchmark's cluster: 10,000 Services × 2 ports × 10
  -- endpoints, 100 nodes, 1,000 pods, 50 policies.
  local s
  setup(function()
    s = store_module.new({ node_name = "node-1" })
    for i = 1, 100 do
      s:upsert(node("node-" .. i))
    end
    for i = 1, 10000 do
      local ip = string.format("10.96.%d.%d", math.floor(i / 256), i % 256)
      s:upsert(service("ns-" .. (i % 20), "svc-" .. i, { ip },
        { { name = "http", port = 80 }, { name = "https", port = 443 } }))
      local sl = slice("ns-" .. (i % 20), "svc-" .. i .. "-abcde", "svc-" .. i)
      sl.endpoints = {}
      for e = 1, 10 do
        sl.endpoints[e] = { addresses = { string.format("10.%d.%d.%d", 100 + e, math.floor(i / 256), i % 256) } }
      end
      s:upsert(sl)
    end
    for i = 1, 1000 do
      s:upsert(pod("ns-" .. (i % 20), "pod-" .. i, { app = "app-" .. (i % 50) }, "node-" .. (i % 100 + 1)))
    end
    for i = 1, 50 do
      if i % 2 == 0 then
        s:upsert(lrp("lrp-" .. i, { ip = "169.254.0." .. i, ports = ports("53/UDP") }, { app = "app-" .. i }))
      else
        s:upsert(bp("bp-" .. i, { service = "ns-" .. (i % 20) .. "/svc-" .. i }, { app = "app-" .. i }))
      end
    end
    s:take_dirty()
  end)

  it("marks one Service per EndpointSlice change, without scanning", function()
    local started = os.clock()
    for i = 1, 1000 do
      local sl = s:get("EndpointSlice", "ns-" .. (i % 20), "svc-" .. i .. "-abcde")
      local copy = { kind = sl.kind, metadata = sl.metadata, addressType = "IPv4",
        endpoints = { { addresses = { "10.9." .. (i % 250) .. ".1" } } } } -- an endpoint moved
      assert(s:upsert(copy))
      local dirty = s:take_dirty()
      assert.same({ ["service/ns-" .. (i % 20) .. "/svc-" .. i] = true }, dirty)
    end
    local elapsed = os.clock() - started
    -- Far below what a pass over 10,000 Services per event would cost.
    assert.is_true(elapsed < 0.5, string.format("1000 EndpointSlice events took %.3f s", elapsed))
  end)

  it("marks only the matching policies per Pod change", function()
    local started = os.clock()
    for i = 1, 1000 do
      local p = pod("ns-" .. (i % 20), "pod-" .. i, { app = "app-" .. (i % 50), v = "2" }, "node-" .. (i % 100 + 1))
      assert(s:upsert(p))
      local dirty = s:take_dirty()
      for owner in pairs(dirty) do
        assert.matches("app%-" .. (i % 50) .. "$", "app-" .. owner:match("(%d+)$"))
      end
    end
    assert.is_true(os.clock() - started < 0.5)
  end)

  it("answers the indexes without scanning", function()
    local started = os.clock()
    for i = 1, 1000 do
      assert.equals(1, #s:endpoint_slices_of("ns-" .. (i % 20), "svc-" .. i))
      assert.equals(1, #s:services_by_cluster_ip(string.format("10.96.%d.%d", math.floor(i / 256), i % 256)))
    end
    assert.equals(10, #s:pods_on_node("node-1"))
    assert.equals(20, #s:pods_matching(selector.compile({ matchLabels = { app = "app-7" } })))
    assert.is_true(os.clock() - started < 0.5)
  end)
end)

describe("store: list after a change", function()
  it("lists the new version of a modified object, not the one listed before", function()
    local s = new_store(node("node-1"), node("node-2"))
    assert.equals(2, #s:list("Node")) -- the sorted list is made and kept
    local changed = node("node-1", { zone = "b" })
    assert(s:upsert(changed))
    assert.equals(changed, s:list("Node")[1])
  end)

  it("keeps the table it holds when a relist brings the same uid and resourceVersion", function()
    local first = node("node-1", { zone = "a" })
    first.metadata.resourceVersion, first.metadata.uid = "7", "u1"
    local s = new_store(first)
    local again = node("node-1", { zone = "b" }) -- (not read: the version says it is the same)
    again.metadata.resourceVersion, again.metadata.uid = "7", "u1"
    assert(s:upsert(again))
    assert.equals(first, s:get("Node", "", "node-1"))
    assert.equals(first, s:list("Node")[1])
    assert.same({}, dirty_list(s))
  end)

  it("takes a Service or EndpointSlice by what it holds: a relist's same text marks nothing", function()
    local first = service("default", "web", { "10.96.0.1" })
    first.metadata.resourceVersion = "7"
    local s = new_store(first)
    local again = service("default", "web", { "10.96.0.1" })
    again.metadata.resourceVersion = "7"
    assert(s:upsert(again))
    assert.same({}, dirty_list(s))
    local changed = service("default", "web", { "10.96.0.2" })
    changed.metadata.resourceVersion = "7"
    assert(s:upsert(changed))
    assert.same({ "service/default/web" }, dirty_list(s))
  end)

  it("keeps the texts of Services and EndpointSlices in its text arena, and lets go of them", function()
    local s = new_store(service("default", "web", { "10.96.0.1" }), slice("default", "web-1", "web"),
      node("node-1"))
    assert.is_not_nil(s.texts, "the store has a text arena where balancing.core is")
    assert.equals(2, s.texts:stats().texts)
    assert(s:upsert(service("default", "web", { "10.96.0.2" }))) -- a new version replaces the text
    assert.equals(2, s.texts:stats().texts)
    assert(s:delete(slice("default", "web-1", "web")))
    assert(s:resync("Service", {}))
    assert.equals(0, s.texts:stats().texts)
  end)

  it("holds its texts deflated against packed.DICTIONARY, and gives the objects back as they came", function()
    local web, web_slice = service("default", "web", { "10.96.0.1" }), slice("default", "web-1", "web")
    local s = new_store(web, web_slice)
    local stats = s.texts:stats()
    assert.is_true(stats.live_bytes * 2 < stats.text_bytes,
      string.format("%d bytes held for %d of text", stats.live_bytes, stats.text_bytes))
    assert.same(web.spec, s:get("Service", "default", "web").spec)
    assert.same(web_slice.endpoints, s:get("EndpointSlice", "default", "web-1").endpoints)
  end)

  it("marks nothing when an object comes again as it is, without a resourceVersion", function()
    local s = new_store(service("default", "web", { "10.96.0.1" }), slice("default", "web-1", "web"))
    assert(s:upsert(service("default", "web", { "10.96.0.1" })))
    assert(s:upsert(slice("default", "web-1", "web")))
    assert.same({}, dirty_list(s))
  end)

  it("gives Services and EndpointSlices back as fresh tables equal to what it was given", function()
    local svc, sl = service("default", "web", { "10.96.0.1" }), slice("default", "web-1", "web")
    local s = new_store(svc, sl)
    local got = s:get("Service", "default", "web")
    assert.same(svc, got)
    got.spec.clusterIP = "10.0.0.1" -- a reader's change stays its own
    assert.same(svc, s:get("Service", "default", "web"))
    assert.same({ sl }, s:endpoint_slices_of("default", "web"))
  end)
end)

describe("store: resync (a relist after 410 Gone, a directory read again)", function()
  it("deletes what the complete list lacks: deleted while no watch was open", function()
    local s = new_store(service("default", "web", { "10.96.0.1" }), service("default", "gone", { "10.96.0.2" }))
    local result = s:resync("Service", { service("default", "web", { "10.96.0.1" }) })
    assert.equals(1, result.upserted)
    assert.equals(1, result.deleted)
    assert.same({}, result.refused)
    assert.same({ "default/web" }, names(s:list("Service")))
    -- web came as it was: only what was deleted is marked
    assert.same({ "service/default/gone" }, dirty_list(s))
  end)

  it("adds and changes what the list has", function()
    local s = new_store(service("default", "web", { "10.96.0.1" }))
    s:resync("Service", { service("default", "web", { "10.96.0.9" }), service("default", "new", { "10.96.0.3" }) })
    assert.same({ "default/new", "default/web" }, names(s:list("Service")))
    assert.same({ "default/web" }, names(s:services_by_cluster_ip("10.96.0.9")))
  end)

  it("marks nothing for an object seen again with the same uid and resourceVersion", function()
    local web = service("default", "web", { "10.96.0.1" })
    web.metadata.resourceVersion = "7"
    local s = new_store(web)
    local again = service("default", "web", { "10.96.0.1" })
    again.metadata.resourceVersion = "7"
    s:resync("Service", { again })
    assert.same({}, dirty_list(s))
  end)

  it("leaves the other kinds alone", function()
    local s = new_store(service("default", "web", { "10.96.0.1" }), slice("default", "web-1", "web"))
    s:resync("EndpointSlice", {})
    assert.equals(1, s:count("Service"))
    assert.equals(0, s:count("EndpointSlice"))
  end)

  it("reports an object without a name, or of another kind, and goes on", function()
    local s = new_store(service("default", "web", { "10.96.0.1" }))
    local result = s:resync("Service", { { kind = "Service", metadata = { namespace = "default" } },
      node("node-9"), service("default", "web", { "10.96.0.1" }) })
    assert.equals(2, #result.refused)
    assert.matches("metadata.name is missing", result.refused[1].err, 1, true)
    assert.matches("in a list of Service", result.refused[2].err, 1, true)
    assert.same({ "default/web" }, names(s:list("Service")))
  end)
end)
