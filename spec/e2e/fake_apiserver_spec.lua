-- The fake API server (scripts/fake_apiserver.py) speaks the real protocol:
-- real clients — kubectl, the Kubernetes Python client, curl — accept it, and
-- it refuses what a real server refuses. Everything on 127.0.0.1, each server
-- in a temporary directory of its own, every process stopped by pid after
-- each spec (helpers/apiserver.lua).
local apiserver = require("helpers.apiserver")
local cjson = require("cjson")
local scratch = require("helpers.scratch")

local quote = scratch.quote
local CLUSTER = "spec/fixtures/apiserver/cluster"
local PYTHON_CLIENT = "spec/fixtures/apiserver/python_client.py"
-- Debian's interpreter: python3-kubernetes lives in its dist-packages, which
-- another python3 first on PATH (pyenv's) does not see.
local DEBIAN_PYTHON = "/usr/bin/python3"
local TOKEN = "spec-token-0123456789"

local function run(command)
  local pipe = assert(io.popen("unset LD_PRELOAD; " .. command .. " 2>&1; echo \"exit=$?\""))
  local output = pipe:read("*a")
  pipe:close()
  local status = tonumber(output:match("exit=(%d+)\n$"))
  return status, (output:gsub("exit=%d+\n$", ""))
end

local function start_cluster(options)
  options = options or {}
  options.tls = options.tls ~= false
  options.token = options.token or TOKEN
  options.manifests = options.manifests or CLUSTER
  return apiserver.start(options)
end

-- kubectl with the server's kubeconfig (its token, or with auth "cert" its
-- client certificate) and a discovery cache of its own.
local function kubectl_command(server, args, auth)
  return "kubectl --kubeconfig " .. quote(server:kubeconfig(auth)) .. " --cache-dir "
    .. quote(server.dir .. "/cache") .. " --request-timeout=20s " .. args
end

local function kubectl(server, args, auth)
  return run(kubectl_command(server, args, auth))
end

local function python_client(server, args)
  local status, output = run(DEBIAN_PYTHON .. " " .. PYTHON_CLIENT .. " " .. quote(server:kubeconfig()) .. " " .. args)
  assert(status == 0, "the Python client failed: " .. output)
  -- its results are the JSON lines; anything else (a library's warning) is not
  local results = {}
  for line in output:gmatch("[^\n]+") do
    if line:match("^{") then
      results[#results + 1] = cjson.decode(line)
    end
  end
  assert(#results > 0, "the Python client printed no result: " .. output)
  return results
end

local function service(namespace, name, labels)
  return { apiVersion = "v1", kind = "Service",
    metadata = { namespace = namespace, name = name, labels = labels },
    spec = { clusterIP = "10.96.5.5", ports = { { port = 80, protocol = "TCP" } } } }
end

local function pod(namespace, name, node)
  return { apiVersion = "v1", kind = "Pod", metadata = { namespace = namespace, name = name },
    spec = { nodeName = node, containers = { { name = "c", image = "c:1" } } } }
end

-- The events of a watch's output, decoded one per line.
local function events_of(text)
  local events = {}
  for line in text:gmatch("[^\n]+") do
    events[#events + 1] = cjson.decode(line)
  end
  return events
end

local function names_of(list)
  local names = {}
  for _, item in ipairs(list.items) do
    names[#names + 1] = item.metadata.name
  end
  return names
end

describe("fake API server", function()
  after_each(apiserver.stop_all)

  setup(function()
    for _, tool in ipairs({ "kubectl", "curl", "openssl", DEBIAN_PYTHON }) do
      assert(run("command -v " .. tool) == 0, tool .. " is missing: scripts/setup.sh installs it")
    end
    assert(run(DEBIAN_PYTHON .. " -c 'import kubernetes'") == 0,
      "python3-kubernetes is missing: scripts/setup.sh installs it")
  end)

  describe("with kubectl", function()
    it("get services -A lists every namespace's Services, found through discovery", function()
      local server = start_cluster()
      local status, output = kubectl(server, "get services -A")
      assert.equal(0, status, output)
      assert.matches("kube%-system%s+kube%-dns%s", output)
      assert.matches("shop%s+web", output)
      assert.matches("shop%s+db%-headless", output)
    end)

    it("get prints the server's Table: the columns a real server defines for the kind", function()
      local server = start_cluster()
      local status, output = kubectl(server, "get services -n kube-system -o wide")
      assert.equal(0, status, output)
      assert.matches("^NAME%s+TYPE%s+CLUSTER%-IP%s+EXTERNAL%-IP%s+PORT%(S%)%s+AGE%s+SELECTOR\n", output)
      assert.matches("\nkube%-dns%s+ClusterIP%s+10%.96%.0%.10%s+<none>%s+53/UDP%s+%d+s%s+k8s%-app=kube%-dns\n", output)
      -- (from a plain List, kubectl prints NAME and AGE only)
    end)

    it("get --chunk-size=2 pages through the list with continue tokens", function()
      local server = start_cluster()
      server:seed({ service("shop", "extra-1"), service("shop", "extra-2") })
      local status, output = kubectl(server, "get services -A --chunk-size=2")
      assert.equal(0, status, output)
      for _, name in ipairs({ "kube-dns", "web", "db-headless", "other-proxy", "extra-1", "extra-2" }) do
        assert.matches("%s" .. name:gsub("%-", "%%-") .. "%s", output)
      end
      -- 6 Services in pages of 2: the first request and two continued ones
      local continued = 0
      for _, request in ipairs(server:requests()) do
        if request.path:match("^/api/v1/services%?") then
          assert.matches("limit=2", request.path)
          if request.path:match("continue=") then
            continued = continued + 1
          end
        end
      end
      assert.equal(2, continued)
    end)

    it("get pods -w shows a pod created after the list", function()
      local server = start_cluster()
      local watch = server:spawn(kubectl_command(server, "get pods -A -w"))
      watch:wait_for("web%-2")
      assert.is_nil(watch:output():find("late%-pod"))
      local code, text = server:request("POST", "/api/v1/namespaces/shop/pods", pod("shop", "late-pod", "node-1"))
      assert.equal(201, code, text)
      watch:wait_for("shop%s+late%-pod")
      assert.is_nil(watch:status()) -- still watching
    end)

    it("annotate node patches the node (merge patch), and the change is stored", function()
      local server = start_cluster()
      local status, output = kubectl(server, "annotate node node-1 balancing.elf.io/nodeId=7")
      assert.equal(0, status, output)
      local code, _, node = server:request("GET", "/api/v1/nodes/node-1")
      assert.equal(200, code)
      assert.equal("7", node.metadata.annotations["balancing.elf.io/nodeId"])
      local patched = false
      for _, request in ipairs(server:requests()) do
        patched = patched or (request.method == "PATCH" and request.path:match("^/api/v1/nodes/node%-1") ~= nil)
      end
      assert.is_true(patched)
      -- a second annotate of the same key without --overwrite is refused by kubectl itself,
      -- which proves it read the stored annotation back
      status, output = kubectl(server, "annotate node node-1 balancing.elf.io/nodeId=8")
      assert.is_not.equal(0, status)
      assert.matches("already has a value", output)
    end)

    it("get lr and get bl resolve the CRDs' short names through discovery", function()
      local server = start_cluster()
      local status, output = kubectl(server, "get lr")
      assert.equal(0, status, output)
      -- the CRD's printer columns: frontend, backend, ID (its balancing.elf.io/serviceId), age
      assert.matches("^NAME%s+FRONTEND%-IP%s+FRONTEND%-SERVICE%s+BACKEND%-PODS%s+ID%s+AGE\n", output)
      -- (no Frontend-IP: a null cell, which kubectl prints empty)
      assert.matches("\nnode%-local%-dns%s+kube%-dns%s+{\"k8s%-app\":\"node%-local%-dns\"}%s+42%s", output)
      status, output = kubectl(server, "get bl")
      assert.equal(0, status, output)
      assert.matches("^NAME%s+FRONTEND%-IP%s+FRONTEND%-SERVICE%s+BACKEND%-MODE%s+BACKEND%-ADDRESSES%s+ID%s+AGE\n",
        output)
      assert.matches("web%-by%-address", output)
    end)

    it("get lr fails as on a cluster without the CRDs when the group is not served", function()
      local server = start_cluster({ no_crds = true })
      local status, output = kubectl(server, "get lr")
      assert.is_not.equal(0, status)
      assert.matches("doesn't have a resource type", output)
      status, output = kubectl(server, "get services -A")
      assert.equal(0, status, output)
    end)
  end)

  describe("with the Kubernetes Python client", function()
    it("list with limit and _continue returns every Service once, all pages at one resourceVersion", function()
      local server = start_cluster()
      local result = python_client(server, "list-services 3")[1]
      assert.equal(2, #result.pages)
      assert.equal(3, #result.pages[1].names)
      assert.equal(1, #result.pages[2].names)
      local seen = {}
      for _, page in ipairs(result.pages) do
        assert.equal(result.pages[1].resourceVersion, page.resourceVersion)
        for _, name in ipairs(page.names) do
          assert.is_nil(seen[name])
          seen[name] = true
        end
      end
      assert.same({ ["kube-dns"] = true, web = true, ["db-headless"] = true, ["other-proxy"] = true }, seen)
    end)

    it("Watch().stream delivers a pod created meanwhile and ends at timeout_seconds", function()
      local server = start_cluster()
      local watch = server:spawn(DEBIAN_PYTHON .. " " .. PYTHON_CLIENT .. " " .. quote(server:kubeconfig())
        .. " watch-pods 5")
      watch:wait_for('"name": "web%-2"')
      server:seed(pod("shop", "late-pod", "node-2"))
      watch:wait_for('{"type": "ADDED", "name": "late%-pod"}')
      assert.equal(0, watch:wait(20))
      assert.matches('"ended": true', watch:output())
    end)

    it("patch_node with a stale resourceVersion is 409 Conflict; with the current one it applies", function()
      local server = start_cluster()
      local _, _, node = server:request("GET", "/api/v1/nodes/node-1")
      local current = node.metadata.resourceVersion
      server:seed(service("shop", "bump")) -- the global resourceVersion moves on, the node's does not
      local stale = python_client(server, "patch-node node-1 " .. (tonumber(current) - 1))[1]
      assert.equal(409, stale.status)
      assert.equal("Conflict", stale.body.reason)
      assert.equal("node-1", stale.body.details.name)
      local fresh = python_client(server, "patch-node node-1 " .. current)[1]
      assert.equal(200, fresh.status)
      assert.equal("7", fresh.annotations["balancing.elf.io/nodeId"])
      assert.is_true(tonumber(fresh.resourceVersion) > tonumber(current))
    end)
  end)

  describe("on the wire (curl)", function()
    it("answers a request without the bearer token, or with a wrong one, 401 with a Status", function()
      local server = start_cluster()
      for _, token in ipairs({ false, "wrong" }) do
        local code, text, status = server:request("GET", "/api/v1/services", nil, { token = token })
        assert.equal(401, code, text)
        assert.equal("Status", status.kind)
        assert.equal("Unauthorized", status.reason)
        assert.equal(401, status.code)
      end
      assert.equal(200, (server:request("GET", "/api/v1/services")))
    end)

    it("accepts the tokens a rotation leaves, and refuses the one it replaced", function()
      local server = start_cluster()
      server:control("/_fake/auth", { tokens = { "rotated" } })
      assert.equal(401, (server:request("GET", "/api/v1/nodes")))
      assert.equal(200, (server:request("GET", "/api/v1/nodes", nil, { token = "rotated" })))
    end)

    it("authenticates a client certificate of the test CA without a token, as the x509 authenticator", function()
      local server = start_cluster({ client_cert = true })
      local status, output = kubectl(server, "get nodes", "cert")
      assert.equal(0, status, output)
      assert.matches("node%-1", output)
      local code = server:request("GET", "/api/v1/nodes", nil, { token = false })
      assert.equal(401, code)
      local curl_status, curl_output = run(server:curl_words({ token = false }) .. " -o /dev/null -w '%{http_code}'"
        .. " --cert " .. quote(server.client_cert) .. " --key " .. quote(server.client_key)
        .. " " .. quote(server.url .. "/api/v1/nodes"))
      assert.equal(0, curl_status, curl_output)
      assert.equal("200", curl_output)
    end)

    it("serves TLS whose certificate verifies against the test CA, not against the system's", function()
      local server = start_cluster()
      local status = run("curl -sS --max-time 10 -o /dev/null " .. quote(server.url .. "/version"))
      assert.equal(60, status) -- CURLE_PEER_FAILED_VERIFICATION: not signed by a system CA
      assert.equal(200, (server:request("GET", "/version")))
    end)

    it("listens on 127.0.0.1 only", function()
      local server = start_cluster()
      local status, output = run("ss -Hltnp")
      assert.equal(0, status)
      local found
      for line in output:gmatch("[^\n]+") do
        local address = line:match("%s(%S+):" .. server.port .. "%s")
        if address then
          found = true
          assert.equal("127.0.0.1", address)
        end
      end
      assert.is_true(found)
    end)

    it("discovery lists the two CRDs, cluster-scoped, with their short names", function()
      local server = start_cluster()
      local code, _, groups = server:request("GET", "/apis")
      assert.equal(200, code)
      local names = {}
      for _, group in ipairs(groups.groups) do
        names[#names + 1] = group.name
      end
      assert.same({ "discovery.k8s.io", "balancing.elf.io" }, names)
      local _, _, list = server:request("GET", "/apis/balancing.elf.io/v1beta1")
      local by_name = {}
      for _, resource in ipairs(list.resources) do
        by_name[resource.name] = resource
      end
      assert.same({ "lr" }, by_name.localredirectpolicies.shortNames)
      assert.same({ "bl" }, by_name.balancingpolicies.shortNames)
      assert.is_false(by_name.localredirectpolicies.namespaced)
      assert.equal("BalancingPolicy", by_name.balancingpolicies.kind)
    end)

    it("without the CRDs the group is absent from /apis and its paths are 404", function()
      local server = start_cluster({ no_crds = true })
      local _, text = server:request("GET", "/apis")
      assert.is_nil(text:find("balancing.elf.io", 1, true))
      local code, _, status = server:request("GET", "/apis/balancing.elf.io/v1beta1/localredirectpolicies")
      assert.equal(404, code)
      assert.equal("NotFound", status.reason)
    end)

    it("GET of a missing object is 404 NotFound naming it", function()
      local server = start_cluster()
      local code, _, status = server:request("GET", "/api/v1/namespaces/shop/services/nope")
      assert.equal(404, code)
      assert.equal("NotFound", status.reason)
      assert.equal('services "nope" not found', status.message)
    end)

    it("create stamps uid, creationTimestamp and the next resourceVersion; a second create is 409 AlreadyExists",
      function()
        local server = start_cluster()
        local _, _, list = server:request("GET", "/api/v1/services")
        local code, text, created = server:request("POST", "/api/v1/namespaces/shop/services", service("shop", "new"))
        assert.equal(201, code, text)
        assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", created.metadata.uid)
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT", created.metadata.creationTimestamp)
        assert.equal(tostring(tonumber(list.metadata.resourceVersion) + 1), created.metadata.resourceVersion)
        local again, _, status = server:request("POST", "/api/v1/namespaces/shop/services", service("shop", "new"))
        assert.equal(409, again)
        assert.equal("AlreadyExists", status.reason)
      end)

    it("a strategic merge patch on a custom resource is 415; merge and JSON patches apply", function()
      local server = start_cluster()
      local path = "/apis/balancing.elf.io/v1beta1/localredirectpolicies/node-local-dns"
      local patch = { metadata = { annotations = { ["balancing.elf.io/serviceId"] = "12" } } }
      local code, _, status = server:request("PATCH", path, patch,
        { content_type = "application/strategic-merge-patch+json" })
      assert.equal(415, code)
      assert.equal("UnsupportedMediaType", status.reason)
      local merged, _, policy = server:request("PATCH", path, patch, { content_type = "application/merge-patch+json" })
      assert.equal(200, merged)
      assert.equal("12", policy.metadata.annotations["balancing.elf.io/serviceId"])
      local json_patch = { { op = "test", path = "/metadata/annotations/balancing.elf.io~1serviceId", value = "12" },
        { op = "replace", path = "/metadata/annotations/balancing.elf.io~1serviceId", value = "13" } }
      local patched, text, after = server:request("PATCH", path, json_patch,
        { content_type = "application/json-patch+json" })
      assert.equal(200, patched, text)
      assert.equal("13", after.metadata.annotations["balancing.elf.io/serviceId"])
    end)

    it("a strategic merge patch on a Node merges its addresses by type", function()
      local server = start_cluster()
      local code, text, node = server:request("PATCH", "/api/v1/nodes/node-1",
        { status = { addresses = { { type = "InternalIP", address = "10.0.0.11" } } } },
        { content_type = "application/strategic-merge-patch+json" })
      assert.equal(200, code, text)
      assert.same({ { type = "InternalIP", address = "10.0.0.11" }, { type = "Hostname", address = "node-1" } },
        node.status.addresses)
    end)

    it("a resourceVersion in a patch or update body is a precondition: 409 Conflict when stale", function()
      local server = start_cluster()
      local _, _, node = server:request("GET", "/api/v1/nodes/node-2")
      local stale = node.metadata.resourceVersion
      assert.equal(200, (server:request("PATCH", "/api/v1/nodes/node-2",
        { metadata = { resourceVersion = stale, labels = { a = "1" } } },
        { content_type = "application/merge-patch+json" })))
      local code, _, status = server:request("PATCH", "/api/v1/nodes/node-2",
        { metadata = { resourceVersion = stale, labels = { a = "2" } } },
        { content_type = "application/merge-patch+json" })
      assert.equal(409, code)
      assert.equal("Conflict", status.reason)
      assert.matches("the object has been modified", status.message)
      node.metadata.labels = { a = "3" }
      local put = server:request("PUT", "/api/v1/nodes/node-2", node)
      assert.equal(409, put)
    end)

    it("a patch that changes nothing keeps the resourceVersion and sends no watch event", function()
      local server = start_cluster()
      local path = "/api/v1/nodes/node-1"
      local patch = { metadata = { labels = { zone = "a" } } }
      local options = { content_type = "application/merge-patch+json" }
      local _, _, first = server:request("PATCH", path, patch, options)
      local watch = server:spawn(server:curl_words() .. " -N " .. quote(server.url
        .. "/api/v1/nodes?watch=1&timeoutSeconds=1&resourceVersion=" .. first.metadata.resourceVersion))
      local code, _, second = server:request("PATCH", path, patch, options)
      assert.equal(200, code)
      assert.equal(first.metadata.resourceVersion, second.metadata.resourceVersion)
      assert.equal(0, watch:wait(20))
      assert.equal("", watch:output())
    end)

    it("an update of a custom resource without a resourceVersion is 422, as CRDs allow no unconditional update",
      function()
        local server = start_cluster()
        local path = "/apis/balancing.elf.io/v1beta1/balancingpolicies/web-by-address"
        local _, _, policy = server:request("GET", path)
        policy.metadata.resourceVersion = nil
        local code, _, status = server:request("PUT", path, policy)
        assert.equal(422, code)
        assert.equal("Invalid", status.reason)
      end)

    it("a list at resourceVersion=0 is served whole, as from the watch cache, whatever the limit", function()
      local server = start_cluster()
      local _, _, paged = server:request("GET", "/api/v1/services?limit=1")
      assert.equal(1, #paged.items)
      assert.is_string(paged.metadata.continue)
      local _, _, cached = server:request("GET", "/api/v1/services?limit=1&resourceVersion=0")
      assert.equal(4, #cached.items)
      assert.is_nil(cached.metadata.continue)
    end)

    it("an expired continue token is 410 Expired once its resourceVersion is compacted", function()
      local server = start_cluster()
      local _, _, page = server:request("GET", "/api/v1/services?limit=1")
      local token = page.metadata.continue
      assert.is_string(token)
      -- before the compaction it still reads at the first page's resourceVersion
      server:seed(service("aaa", "created-later"))
      local code, _, next_page = server:request("GET", "/api/v1/services?limit=10&continue=" .. token)
      assert.equal(200, code)
      assert.equal(page.metadata.resourceVersion, next_page.metadata.resourceVersion)
      assert.is_nil(table.concat(names_of(next_page), ","):find("created-later"))
      server:control("/_fake/compact")
      local expired, _, status = server:request("GET", "/api/v1/services?limit=10&continue=" .. token)
      assert.equal(410, expired)
      assert.equal("Expired", status.reason)
    end)

    it("a watch from a compacted resourceVersion gets one ERROR event with a 410 Status", function()
      local server = start_cluster()
      local _, _, list = server:request("GET", "/api/v1/pods")
      server:seed(pod("shop", "p", "node-1"))
      server:control("/_fake/compact")
      local watch = server:spawn(server:curl_words() .. " -N "
        .. quote(server.url .. "/api/v1/pods?watch=1&resourceVersion=" .. list.metadata.resourceVersion))
      assert.equal(0, watch:wait(20))
      local events = events_of(watch:output())
      assert.equal(1, #events)
      assert.equal("ERROR", events[1].type)
      assert.equal(410, events[1].object.code)
      assert.equal("Expired", events[1].object.reason)
    end)

    it("a watch from a resourceVersion sends exactly the changes after it", function()
      local server = start_cluster()
      local _, _, list = server:request("GET", "/api/v1/pods")
      server:seed(pod("shop", "p1", "node-1"))
      server:request("DELETE", "/api/v1/namespaces/shop/pods/web-1")
      local watch = server:spawn(server:curl_words() .. " -N "
        .. quote(server.url .. "/api/v1/pods?watch=true&timeoutSeconds=1&resourceVersion="
          .. list.metadata.resourceVersion))
      assert.equal(0, watch:wait(20))
      local events = events_of(watch:output())
      assert.equal(2, #events)
      assert.equal("ADDED", events[1].type)
      assert.equal("p1", events[1].object.metadata.name)
      assert.equal("DELETED", events[2].type)
      assert.equal("web-1", events[2].object.metadata.name)
      local added_rv, deleted_rv = events[1].object.metadata.resourceVersion, events[2].object.metadata.resourceVersion
      assert.is_true(tonumber(deleted_rv) > tonumber(added_rv))
    end)

    it("allowWatchBookmarks=true brings BOOKMARK events carrying the current resourceVersion", function()
      local server = start_cluster({ bookmark_interval = 0.2 })
      local _, _, list = server:request("GET", "/api/v1/services")
      local watch = server:spawn(server:curl_words() .. " -N "
        .. quote(server.url .. "/api/v1/services?watch=1&allowWatchBookmarks=true&resourceVersion="
          .. list.metadata.resourceVersion))
      watch:wait_for("BOOKMARK")
      local bookmark = events_of(watch:output())[1]
      assert.equal("BOOKMARK", bookmark.type)
      assert.equal("Service", bookmark.object.kind)
      assert.equal(list.metadata.resourceVersion, bookmark.object.metadata.resourceVersion)
      -- without the option, none
      local plain = server:spawn(server:curl_words() .. " -N "
        .. quote(server.url .. "/api/v1/services?watch=1&timeoutSeconds=1&resourceVersion="
          .. list.metadata.resourceVersion))
      assert.equal(0, plain:wait(20))
      assert.equal("", plain:output())
    end)

    it("timeoutSeconds ends a watch with the final chunk (a clean end, not a cut)", function()
      local server = start_cluster()
      local watch = server:spawn(server:curl_words() .. " -N "
        .. quote(server.url .. "/api/v1/nodes?watch=1&timeoutSeconds=1"))
      -- curl exits 0 only after the terminating chunk; a cut connection is exit 18
      assert.equal(0, watch:wait(20))
      assert.equal(2, #events_of(watch:output())) -- the two nodes, ADDED, from "no resourceVersion"
    end)

    it("a watch ends when its client goes away, and no longer counts as open", function()
      local server = start_cluster()
      local function open_watches()
        return #server:control("/_fake/state", nil, "GET").openWatches
      end
      local watch = server:spawn(server:curl_words() .. " -N " .. quote(server.url .. "/api/v1/pods?watch=1"))
      assert.is_true(apiserver.wait_until(function()
        return open_watches() == 1
      end, 20))
      watch:kill()
      assert.is_true(apiserver.wait_until(function()
        return open_watches() == 0
      end, 20))
    end)

    it("the label selector of kube-proxy's Service list drops headless and other proxies' Services", function()
      local server = start_cluster()
      -- !service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name
      local selector = "labelSelector=%21service.kubernetes.io%2Fheadless"
        .. "%2C%21service.kubernetes.io%2Fservice-proxy-name"
      local _, _, list = server:request("GET", "/api/v1/services?" .. selector)
      local names = names_of(list)
      table.sort(names)
      assert.same({ "kube-dns", "web" }, names)
      local _, _, equal = server:request("GET", "/api/v1/services?labelSelector=k8s-app%3Dkube-dns")
      assert.same({ "kube-dns" }, names_of(equal))
      local _, _, unequal = server:request("GET",
        "/api/v1/namespaces/kube-system/services?labelSelector=k8s-app%21%3Dkube-dns")
      assert.same({}, names_of(unequal))
    end)

    it("a watch with a label selector reports an object that stops matching as DELETED", function()
      local server = start_cluster()
      local _, _, list = server:request("GET", "/api/v1/services")
      local watch = server:spawn(server:curl_words() .. " -N " .. quote(server.url
        .. "/api/v1/services?watch=1&labelSelector=%21service.kubernetes.io%2Fheadless&resourceVersion="
        .. list.metadata.resourceVersion))
      assert.equal(200, (server:request("PATCH", "/api/v1/namespaces/shop/services/web",
        { metadata = { labels = { ["service.kubernetes.io/headless"] = "" } } },
        { content_type = "application/merge-patch+json" })))
      watch:wait_for("DELETED")
      local event = events_of(watch:output())[1]
      assert.equal("DELETED", event.type)
      assert.equal("web", event.object.metadata.name)
    end)

    it("fieldSelector spec.nodeName selects pods; a field the kind does not index is 400", function()
      local server = start_cluster()
      local _, _, list = server:request("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-2")
      assert.same({ "web-2" }, names_of(list))
      local _, _, by_name = server:request("GET", "/api/v1/nodes?fieldSelector=metadata.name%3Dnode-1")
      assert.same({ "node-1" }, names_of(by_name))
      local code, _, status = server:request("GET", "/api/v1/services?fieldSelector=spec.nodeName%3Dnode-2")
      assert.equal(400, code)
      assert.equal("BadRequest", status.reason)
    end)
  end)

  describe("faults switched on at run time", function()
    it("failRequests answers the next N API requests 500 with a Status, then recovers", function()
      local server = start_cluster()
      server:control("/_fake/faults", { failRequests = 2 })
      for _ = 1, 2 do
        local code, _, status = server:request("GET", "/api/v1/services")
        assert.equal(500, code)
        assert.equal("InternalError", status.reason)
      end
      assert.equal(200, (server:request("GET", "/api/v1/services")))
    end)

    it("stallRequests leaves requests unanswered until released", function()
      local server = start_cluster()
      server:control("/_fake/faults", { stallRequests = true })
      local status = run(server:curl_words({ max_time = 1 }) .. " -o /dev/null "
        .. quote(server.url .. "/api/v1/nodes"))
      assert.equal(28, status) -- CURLE_OPERATION_TIMEDOUT: connected, and no answer came
      server:control("/_fake/faults", { stallRequests = false })
      assert.equal(200, (server:request("GET", "/api/v1/nodes")))
    end)

    it("dropWatches cuts every open watch without the final chunk", function()
      local server = start_cluster()
      local watch = server:spawn(server:curl_words() .. " -N " .. quote(server.url .. "/api/v1/pods?watch=1"))
      watch:wait_for("web%-2")
      assert.is_true(apiserver.wait_until(function()
        return #server:control("/_fake/state", nil, "GET").openWatches == 1
      end, 20))
      server:control("/_fake/faults", { dropWatches = true })
      assert.equal(18, watch:wait(20)) -- CURLE_PARTIAL_FILE: the stream was cut mid-way
    end)

    it("stallWatches holds back events and bookmarks until released", function()
      local server = start_cluster({ bookmark_interval = 0.2 })
      local _, _, list = server:request("GET", "/api/v1/pods")
      server:control("/_fake/faults", { stallWatches = true })
      local watch = server:spawn(server:curl_words() .. " -N " .. quote(server.url
        .. "/api/v1/pods?watch=1&allowWatchBookmarks=true&resourceVersion=" .. list.metadata.resourceVersion))
      server:seed(pod("shop", "held", "node-1"))
      -- several bookmark intervals pass: nothing may arrive while stalled
      assert.is_nil(apiserver.wait_until(function()
        return watch:output() ~= "" or nil
      end, 1.5))
      server:control("/_fake/faults", { stallWatches = false })
      watch:wait_for("held")
      assert.equal("ADDED", events_of(watch:output())[1].type)
    end)

    it("malformed serves one undecodable object in the next list, then lists are whole again", function()
      local server = start_cluster()
      server:control("/_fake/faults", { malformed = { resource = "services", ["in"] = "list" } })
      local _, _, list = server:request("GET", "/api/v1/services")
      assert.equal(5, #list.items)
      local malformed = 0
      for _, item in ipairs(list.items) do
        if type(item.metadata) ~= "table" then
          malformed = malformed + 1
        end
      end
      assert.equal(1, malformed)
      local _, _, again = server:request("GET", "/api/v1/services")
      assert.equal(4, #again.items)
    end)

    it("malformed in a watch sends one event whose object is undecodable", function()
      local server = start_cluster()
      local _, _, list = server:request("GET", "/api/v1/services")
      server:control("/_fake/faults", { malformed = { resource = "services", ["in"] = "watch" } })
      local watch = server:spawn(server:curl_words() .. " -N " .. quote(server.url
        .. "/api/v1/services?watch=1&timeoutSeconds=1&resourceVersion=" .. list.metadata.resourceVersion))
      assert.equal(0, watch:wait(20))
      local events = events_of(watch:output())
      assert.equal(1, #events)
      assert.equal("MODIFIED", events[1].type)
      assert.equal("malformed", events[1].object.metadata)
    end)

    it("malformed reaches a watch already open, which then goes on", function()
      local server = start_cluster()
      local _, _, list = server:request("GET", "/api/v1/services")
      local watch = server:spawn(server:curl_words() .. " -N " .. quote(server.url
        .. "/api/v1/services?watch=1&resourceVersion=" .. list.metadata.resourceVersion))
      assert.is_true(apiserver.wait_until(function()
        return #server:control("/_fake/state", nil, "GET").openWatches == 1
      end, 20))
      server:control("/_fake/faults", { malformed = { resource = "services", ["in"] = "watch" } })
      watch:wait_for("malformed")
      server:control("/_fake/objects", service("shop", "web"), "DELETE")
      watch:wait_for("DELETED")
      local events = events_of(watch:output())
      assert.equal(2, #events)
      assert.equal("web", events[2].object.metadata.name)
    end)
  end)
end)
