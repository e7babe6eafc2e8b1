-- deploy/ as the API server and the nodes would take it (issue 9): every
-- manifest of deploy/ and examples/ parses, `kubectl kustomize deploy/` renders
-- what kustomization.yaml lists, the objects name each other right and mount
-- what the agent's defaults say, the ClusterRole grants what the agent reads
-- and writes and nothing more, and the CRD schemas accept every example policy
-- and refuse invalid ones — the OpenAPI part with a JSON Schema library
-- (scripts/crd/check_schema.py, python3-jsonschema), every CEL rule with a real
-- CEL implementation (scripts/crd/check_rules.mjs, @bufbuild/cel), each rule
-- with a fixture that breaks it.
--
-- Not checked here (no API server): the API server's own checks of a CRD
-- (structural schema, CEL cost estimates, list-map keys), and how it reports.
local cjson = require("cjson")
local lyaml = require("lyaml")
local scratch = require("helpers.scratch")

local build_dir = os.getenv("BALANCING_BUILD_DIR") or "build"
local quote, read_file, run = scratch.quote, scratch.read_file, scratch.run

local function files_under(dir, pattern)
  local _, stdout = run("find " .. quote(dir) .. " -path '*/node_modules' -prune -o -type f -print | sort")
  local files = {}
  for path in stdout:gmatch("[^\n]+") do
    if path:match(pattern) then
      files[#files + 1] = path
    end
  end
  return files
end

-- The documents of a manifest file (several YAML documents, or one JSON object).
local function documents(path)
  local text = assert(read_file(path), path)
  if path:match("%.json$") then
    return { cjson.decode(text) }
  end
  local docs = {}
  for _, doc in ipairs(lyaml.load(text, { all = true })) do
    if doc ~= lyaml.null and doc ~= nil then
      docs[#docs + 1] = doc
    end
  end
  return docs
end

-- Objects of a document (a List holds several).
local function objects_of(doc)
  if doc.kind == "List" then
    return doc.items
  end
  return { doc }
end

local function deploy_objects()
  local by_key = {}
  for _, path in ipairs(files_under("deploy", "%.ya?ml$")) do
    if not path:match("kustomization%.yaml$") and not path:match("^deploy/examples/") then
      for _, doc in ipairs(documents(path)) do
        by_key[doc.kind .. "/" .. doc.metadata.name] = doc
      end
    end
  end
  return by_key
end

local function container(daemonset, name, init)
  for _, c in ipairs(init and daemonset.spec.template.spec.initContainers or daemonset.spec.template.spec.containers) do
    if c.name == name then
      return c
    end
  end
  error("no container " .. name)
end

local function mount_of(c, name)
  for _, m in ipairs(c.volumeMounts or {}) do
    if m.name == name then
      return m
    end
  end
end

local function volume_of(daemonset, name)
  for _, v in ipairs(daemonset.spec.template.spec.volumes) do
    if v.name == name then
      return v
    end
  end
end

-- The agent's defaults as its --help states them (core/options.c).
local function agent_defaults()
  local _, stdout, stderr = run(quote(build_dir .. "/bin/balancing-agent") .. " --help")
  local text = stdout .. stderr
  local defaults = {}
  for option, value in text:gmatch("%-%-([%w-]+) %u[%u:]*%s+[^\n]-%(default ([^)]+)%)") do
    defaults[option] = value
  end
  assert(defaults.cgroup and defaults.bpffs and defaults["lua-dir"] and defaults.listen, text)
  return defaults
end

-- "256Mi" → MiB
local function mebibytes(quantity)
  local n, unit = tostring(quantity):match("^(%d+)(%a*)$")
  local scale = { Mi = 1, Gi = 1024, Ki = 1 / 1024 }
  return tonumber(n) * assert(scale[unit], "unit of " .. tostring(quantity))
end

describe("deploy/ and examples/ manifests", function()
  it("every manifest parses and names its apiVersion, kind and metadata.name", function()
    local count = 0
    for _, root in ipairs({ "deploy", "examples" }) do
      for _, path in ipairs(files_under(root, "%.ya?ml$")) do
        for _, doc in ipairs(documents(path)) do
          assert.is_string(doc.apiVersion, path)
          assert.is_string(doc.kind, path)
          if doc.kind ~= "Kustomization" then
            for _, obj in ipairs(objects_of(doc)) do
              assert.is_string(obj.metadata and obj.metadata.name, path)
              count = count + 1
            end
          end
        end
      end
      for _, path in ipairs(files_under(root, "%.json$")) do
        if not path:match("expected%-plan") then
          for _, doc in ipairs(documents(path)) do
            assert.is_string(doc.kind, path)
            count = count + 1
          end
        end
      end
    end
    assert.is_true(count > 30, "only " .. count .. " objects")
  end)

  it("kubectl kustomize deploy/ renders every resource kustomization.yaml lists, once", function()
    local status, stdout, stderr = run("kubectl kustomize deploy/")
    assert.are.equal(0, status, stderr)
    local rendered = {}
    for _, doc in ipairs(lyaml.load(stdout, { all = true })) do
      local key = doc.kind .. "/" .. doc.metadata.name
      assert.is_nil(rendered[key], key .. " twice")
      rendered[key] = doc
    end
    local expected = {}
    for key in pairs(deploy_objects()) do
      expected[key] = true
    end
    local got = {}
    for key in pairs(rendered) do
      got[key] = true
    end
    assert.same(expected, got)
    assert.same({
      ["CustomResourceDefinition/balancingpolicies.balancing.elf.io"] = true,
      ["CustomResourceDefinition/localredirectpolicies.balancing.elf.io"] = true,
      ["ClusterRole/balancing-agent"] = true, ["ClusterRoleBinding/balancing-agent"] = true,
      ["ConfigMap/balancing-agent-config"] = true, ["ConfigMap/balancing-lua-overrides"] = true,
      ["DaemonSet/balancing-agent"] = true, ["Namespace/elf"] = true, ["ServiceAccount/balancing-agent"] = true,
    }, got)
  end)
end)

describe("deploy/ cross-references", function()
  local objects = deploy_objects()
  local namespace = objects["Namespace/elf"]
  local daemonset = objects["DaemonSet/balancing-agent"]
  local agent = container(daemonset, "agent")
  local init = container(daemonset, "mount-bpf-fs-and-cgroup2", true)

  it("puts every namespaced object in the namespace elf", function()
    assert.is_table(namespace)
    for key, obj in pairs(objects) do
      local kind = obj.kind
      if kind ~= "Namespace" and kind ~= "ClusterRole" and kind ~= "ClusterRoleBinding"
        and kind ~= "CustomResourceDefinition" then
        assert.equals("elf", obj.metadata.namespace, key)
      else
        assert.is_nil(obj.metadata.namespace, key)
      end
    end
  end)

  it("runs the DaemonSet as the ServiceAccount the ClusterRoleBinding binds to the ClusterRole", function()
    local binding = objects["ClusterRoleBinding/balancing-agent"]
    local sa = objects["ServiceAccount/balancing-agent"]
    assert.equals(sa.metadata.name, daemonset.spec.template.spec.serviceAccountName)
    assert.same({ { kind = "ServiceAccount", name = sa.metadata.name, namespace = sa.metadata.namespace } },
      binding.subjects)
    assert.same({ apiGroup = "rbac.authorization.k8s.io", kind = "ClusterRole", name = "balancing-agent" },
      binding.roleRef)
    assert.is_table(objects["ClusterRole/" .. binding.roleRef.name])
  end)

  it("mounts the agent's default pin directory, cgroup, run directory and Lua override directory", function()
    local defaults = agent_defaults()
    local function mounted(path)
      for _, m in ipairs(agent.volumeMounts) do
        if path == m.mountPath or path:sub(1, #m.mountPath + 1) == m.mountPath .. "/" then
          return m
        end
      end
    end
    local bpffs, cgroup, lua = mounted(defaults.bpffs), mounted(defaults.cgroup), mounted(defaults["lua-dir"])
    assert.is_table(bpffs, defaults.bpffs)
    assert.is_table(cgroup, defaults.cgroup)
    assert.equals(defaults["lua-dir"], lua and lua.mountPath)
    -- the run directory (state.json for inspect): writable, and the host's, so that inspect in
    -- a new pod names the owners of what the old one programmed
    local run_dir = mounted(defaults["run-dir"])
    assert.is_table(run_dir, tostring(defaults["run-dir"]))
    assert.is_not_true(run_dir.readOnly)
    assert.equals(run_dir.mountPath, volume_of(daemonset, run_dir.name).hostPath.path)
    -- the host's own paths, so that pins and the cgroup2 mount outlive the pod
    assert.equals(bpffs.mountPath, volume_of(daemonset, bpffs.name).hostPath.path)
    assert.equals(cgroup.mountPath, volume_of(daemonset, cgroup.name).hostPath.path)
    -- the init container mounts on those same paths, and its script names the cgroup
    assert.equals(bpffs.mountPath, mount_of(init, bpffs.name).mountPath)
    assert.equals(cgroup.mountPath, mount_of(init, cgroup.name).mountPath)
    local script = init.command[#init.command]
    assert.truthy(script:find("mount -t bpf bpf " .. bpffs.mountPath, 1, true), script)
    assert.truthy(script:find("mount -t cgroup2 cgroup2 " .. defaults.cgroup, 1, true), script)
    -- no flag moves them elsewhere
    assert.same({}, agent.args or {})
  end)

  it("gives Bidirectional propagation only to the privileged init container; the agent sees HostToContainer", function()
    for _, m in ipairs(init.volumeMounts) do
      assert.equals("Bidirectional", m.mountPropagation, m.name)
    end
    assert.is_true(init.securityContext.privileged)
    assert.is_false(agent.securityContext.privileged)
    assert.is_false(agent.securityContext.allowPrivilegeEscalation)
    for _, m in ipairs(agent.volumeMounts) do
      if m.name ~= "lua-overrides" then
        assert.equals("HostToContainer", m.mountPropagation, m.name)
      end
    end
  end)

  it("probes /healthz and /readyz where the agent listens by default, on the host network", function()
    local host, port = agent_defaults().listen:match("^(.+):(%d+)$")
    local spec = daemonset.spec.template.spec
    assert.is_true(spec.hostNetwork)
    assert.is_true(spec.hostPID)
    assert.same({ host = host, path = "/healthz", port = tonumber(port) }, agent.livenessProbe.httpGet)
    assert.same({ host = host, path = "/readyz", port = tonumber(port) }, agent.readinessProbe.httpGet)
  end)

  it("takes NODE_NAME from the downward API and the API server's address from the optional ConfigMap", function()
    local env = {}
    for _, e in ipairs(agent.env) do
      env[e.name] = e
    end
    assert.same({ fieldRef = { fieldPath = "spec.nodeName" } }, env.NODE_NAME.valueFrom)
    local config = objects["ConfigMap/balancing-agent-config"]
    for _, name in ipairs({ "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT" }) do
      local ref = env[name].valueFrom.configMapKeyRef
      assert.equals(config.metadata.name, ref.name)
      assert.is_true(ref.optional)
    end
  end)

  it("maps each Lua override key to the module it replaces: the live modules of balancing.overrides", function()
    local volume = volume_of(daemonset, "lua-overrides")
    assert.equals(objects["ConfigMap/balancing-lua-overrides"].metadata.name, volume.configMap.name)
    assert.is_true(volume.configMap.optional)
    local items = {}
    for _, item in ipairs(volume.configMap.items) do
      assert.equals(item.key:gsub("%.lua$", ""):gsub("%.", "/") .. ".lua", item.path)
      assert.is_string(read_file("lua/" .. item.path), item.path)
      items[#items + 1] = item.key:gsub("%.lua$", "")
    end
    local live = {}
    for _, name in ipairs(require("balancing.overrides").LIVE) do
      live[#live + 1] = name
    end
    table.sort(items)
    table.sort(live)
    assert.same(live, items)
  end)

  it("ships as example ConfigMap the kube-proxy-namespace override, byte for byte, under a mapped key", function()
    local example = documents("deploy/examples/lua-overrides-kube-proxy-namespace.yaml")[1]
    local empty = objects["ConfigMap/balancing-lua-overrides"]
    assert.equals(empty.metadata.name, example.metadata.name)
    assert.equals(empty.metadata.namespace, example.metadata.namespace)
    assert.equals(read_file("examples/overrides/kube-proxy-namespace/lua/balancing/reconcile/service.lua"),
      example.data["balancing.reconcile.service.lua"])
    local keys = {}
    for _, item in ipairs(volume_of(daemonset, "lua-overrides").configMap.items) do
      keys[item.key] = true
    end
    for key in pairs(example.data) do
      assert.is_true(keys[key], key)
    end
  end)

  it("rolls one node at a time and sizes memory for the measured RSS plus the maps", function()
    assert.same({ type = "RollingUpdate", rollingUpdate = { maxUnavailable = 1 } }, daemonset.spec.updateStrategy)
    local resources = agent.resources
    assert.is_string(resources.requests.cpu)
    -- ~85 MiB RSS at 10,000 Services (docs/benchmarks.md) + ~95 MiB of maps charged to the pod
    assert.is_true(mebibytes(resources.requests.memory) >= 85 + 95, resources.requests.memory)
    assert.is_true(mebibytes(resources.limits.memory) >= 2 * (85 + 95), resources.limits.memory)
  end)
end)

describe("the ClusterRole", function()
  local role = deploy_objects()["ClusterRole/balancing-agent"]

  -- (group, resource) → set of verbs
  local function grants()
    local out = {}
    for _, rule in ipairs(role.rules) do
      assert.is_nil(rule.nonResourceURLs)
      assert.is_nil(rule.resourceNames)
      for _, group in ipairs(rule.apiGroups) do
        for _, resource in ipairs(rule.resources) do
          local key = group .. "/" .. resource
          out[key] = out[key] or {}
          for _, verb in ipairs(rule.verbs) do
            out[key][verb] = true
          end
        end
      end
    end
    return out
  end

  it("lets the agent get, list, watch what it reads, patch Nodes and the two policies, nothing else", function()
    local wanted = {}
    for _, kind in ipairs(require("balancing.kube_source").kinds({ node_name = "node-1" })) do
      -- /api/v1/nodes → "/nodes"; /apis/GROUP/VERSION/RESOURCE → "GROUP/RESOURCE"
      local group, resource = kind.path:match("^/apis/([^/]+)/[^/]+/([^/]+)$")
      if not group then
        group, resource = "", kind.path:match("^/api/v1/([^/]+)$")
      end
      local verbs = { get = true, list = true, watch = true }
      if kind.patch_path or kind.kind == "Node" then
        verbs.patch = true
      end
      wanted[group .. "/" .. resource] = verbs
    end
    assert.same(wanted, grants())
  end)
end)

describe("the CRDs", function()
  local crds = {}
  for _, path in ipairs({ "deploy/crds/localredirectpolicies.yaml", "deploy/crds/balancingpolicies.yaml" }) do
    local crd = documents(path)[1]
    crds[crd.spec.names.kind] = crd
  end

  it("are v1beta1 of balancing.elf.io, cluster-scoped, short names lr and bl, category elf", function()
    for kind, short in pairs({ LocalRedirectPolicy = "lr", BalancingPolicy = "bl" }) do
      local crd = crds[kind]
      assert.equals(crd.spec.names.plural .. ".balancing.elf.io", crd.metadata.name)
      assert.equals("balancing.elf.io", crd.spec.group)
      assert.equals("Cluster", crd.spec.scope)
      assert.same({ short }, crd.spec.names.shortNames)
      assert.same({ "elf" }, crd.spec.names.categories)
      assert.equals(1, #crd.spec.versions)
      assert.equals("v1beta1", crd.spec.versions[1].name)
      assert.is_true(crd.spec.versions[1].served and crd.spec.versions[1].storage)
    end
  end)

  it("print the frontend, the backend and the age", function()
    for _, crd in pairs(crds) do
      local columns = {}
      for _, column in ipairs(crd.spec.versions[1].additionalPrinterColumns) do
        columns[#columns + 1] = column.jsonPath
      end
      local text = table.concat(columns, " ")
      assert.truthy(text:find(".spec.frontend.addressMatcher.ip", 1, true))
      assert.truthy(text:find(".spec.frontend.serviceMatcher.serviceName", 1, true))
      assert.truthy(text:find(".spec.backend.", 1, true))
      assert.truthy(text:find(".metadata.creationTimestamp", 1, true))
    end
  end)
end)

-- The schema checks: objects → { errors } per object, from each checker.
local function check(tool, crd, objects)
  local dir = scratch.temp_dir()
  local input = dir .. "/input.json"
  scratch.write_file(input, cjson.encode({ schema = crd.spec.versions[1].schema.openAPIV3Schema, objects = objects }))
  local command
  if tool == "cel" then
    command = "node scripts/crd/check_rules.mjs < " .. quote(input)
  else
    command = "python3 scripts/crd/check_schema.py < " .. quote(input)
  end
  local status, stdout, stderr = run(command)
  scratch.remove_dir(dir)
  assert(status == 0, tool .. " checker failed: " .. stderr)
  return cjson.decode(stdout)
end

local function cel_available()
  return run("test -f scripts/crd/node_modules/@bufbuild/cel/package.json") == 0
end

describe("the CRD schemas on policies", function()
  local crds = {
    LocalRedirectPolicy = documents("deploy/crds/localredirectpolicies.yaml")[1],
    BalancingPolicy = documents("deploy/crds/balancingpolicies.yaml")[1],
  }

  -- Every policy of examples/, and the names plan refuses as invalid (not for a conflict).
  local examples
  local function example_policies()
    if examples then
      return examples.policies, examples.invalid
    end
    local policies, invalid = { LocalRedirectPolicy = {}, BalancingPolicy = {} }, {}
    local dirs = {}
    for _, path in ipairs(files_under("examples", "%.[jy][sa]?ml?n?$")) do
      if not path:match("expected%-plan") and not path:match("/lua/") then
        for _, doc in ipairs(documents(path)) do
          for _, obj in ipairs(objects_of(doc)) do
            if policies[obj.kind] then
              table.insert(policies[obj.kind], obj)
              dirs[path:match("^(.*)/[^/]+$")] = true
            end
          end
        end
      end
    end
    for dir in pairs(dirs) do
      local status, stdout, stderr = run(quote(build_dir .. "/bin/balancing-agent")
        .. " plan --json --node-name node-1 --manifests " .. quote(dir))
      assert(status == 0, stderr)
      for _, rejected in ipairs(cjson.decode(stdout).rejected or {}) do
        if rejected.reason:match("^spec%.") then
          invalid[rejected.kind .. "/" .. rejected.name] = rejected.reason
        end
      end
    end
    examples = { policies = policies, invalid = invalid }
    return policies, invalid
  end

  it("accept every example policy plan accepts, refuse those plan refuses as invalid (OpenAPI, jsonschema)", function()
    local policies, invalid = example_policies()
    local refused, total = 0, 0
    for kind, list in pairs(policies) do
      local results = check("schema", crds[kind], list).results
      for i, obj in ipairs(list) do
        total = total + 1
        local key = kind .. "/" .. obj.metadata.name
        if invalid[key] then
          refused = refused + 1
          assert.is_true(#results[i].errors > 0, key .. " accepted; plan: " .. invalid[key])
        else
          assert.same({}, results[i].errors, key)
        end
      end
    end
    assert.is_true(total >= 7, "only " .. total .. " example policies")
    assert.equals(1, refused) -- bad-address: 10.200.0.300
  end)

  it("evaluate every CEL rule true on every valid example policy (@bufbuild/cel)", function()
    if not cel_available() then
      error("scripts/crd/node_modules/@bufbuild/cel is missing: run scripts/setup.sh")
    end
    local policies, invalid = example_policies()
    for kind, list in pairs(policies) do
      local valid = {}
      for _, obj in ipairs(list) do
        if not invalid[kind .. "/" .. obj.metadata.name] then
          valid[#valid + 1] = obj
        end
      end
      local answer = check("cel", crds[kind], valid)
      for i, result in ipairs(answer.results) do
        assert.same({}, result.errors, kind .. "/" .. valid[i].metadata.name)
      end
    end
  end)

  -- Invalid policies, each breaking one rule: spec/fixtures/crds/invalid.lua. Each checker runs
  -- once per CRD over all of them (a process per fixture is minutes on a busy machine).
  local fixtures = require("fixtures.crds.invalid")
  local checked = {}
  local function checked_fixtures(kind)
    if not checked[kind] then
      local objects, schema_objects = {}, {}
      for _, fixture in ipairs(fixtures.cases) do
        if fixture.kind == kind then
          if fixture.cel then
            objects[#objects + 1] = fixture.object()
          end
          if fixture.schema then
            schema_objects[#schema_objects + 1] = fixture.object()
          end
        end
      end
      assert(cel_available(), "scripts/crd/node_modules/@bufbuild/cel is missing: run scripts/setup.sh")
      checked[kind] = { cel = check("cel", crds[kind], objects), schema = check("schema", crds[kind], schema_objects) }
      -- the answers by fixture
      local cel_i, schema_i = 0, 0
      for _, fixture in ipairs(fixtures.cases) do
        if fixture.kind == kind then
          local answer = {}
          if fixture.cel then
            cel_i = cel_i + 1
            answer.cel = checked[kind].cel.results[cel_i].errors
          end
          if fixture.schema then
            schema_i = schema_i + 1
            answer.schema = checked[kind].schema.results[schema_i].errors
          end
          checked[fixture] = answer
        end
      end
    end
    return checked[kind]
  end

  for _, fixture in ipairs(fixtures.cases) do
    it(fixture.kind .. " refused: " .. fixture.name, function()
      checked_fixtures(fixture.kind)
      local answer = checked[fixture]
      if fixture.schema then
        local text = table.concat(answer.schema, "\n")
        assert.truthy(text:find(fixture.schema, 1, true), "expected schema error '" .. fixture.schema .. "', got: "
          .. text)
      end
      if fixture.cel then
        local messages = {}
        for _, e in ipairs(answer.cel) do
          messages[#messages + 1] = e.path .. ": " .. e.message
        end
        local text = table.concat(messages, "\n")
        assert.truthy(text:find(fixture.cel, 1, true), "expected CEL refusal '" .. fixture.cel .. "', got: " .. text)
      end
      -- and the agent's own check (a manifest never meets the API server) refuses it too
      if not fixture.agent_ignores then
        assert.is_nil((require("balancing.policy_spec").parse(fixture.kind, fixture.object())), fixture.name)
      end
    end)
  end

  it("every CEL rule of each CRD is broken by at least one fixture and by no valid object", function()
    assert(cel_available(), "scripts/crd/node_modules/@bufbuild/cel is missing: run scripts/setup.sh")
    for kind, crd in pairs(crds) do
      local answer = checked_fixtures(kind).cel
      assert.is_true(#answer.rules >= 10, kind .. ": " .. #answer.rules .. " rules")
      for _, rule in ipairs(answer.rules) do
        assert.is_true(rule.refused > 0, kind .. ": no fixture breaks " .. rule.at .. ": " .. rule.rule)
      end
      -- the valid base objects pass every rule
      local base = check("cel", crd, { fixtures.valid(kind, "address"), fixtures.valid(kind, "service") })
      for _, result in ipairs(base.results) do
        assert.same({}, result.errors)
      end
    end
  end)
end)
