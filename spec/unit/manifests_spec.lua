local cjson = require("cjson")
local manifests = require("balancing.manifests")
local store_module = require("balancing.store")
local scratch = require("helpers.scratch")

local FIXTURES = "spec/fixtures/manifests"

local function read(dir)
  local objects, problems = manifests.read_dir(FIXTURES .. "/" .. dir)
  assert(objects, problems)
  return objects, problems
end

local function ids_of(objects)
  local out = {}
  for i, obj in ipairs(objects) do
    out[i] = obj.kind .. " " .. obj.metadata.name
  end
  return out
end

local function problem_list(problems)
  local out = {}
  for i, p in ipairs(problems) do
    out[i] = string.format("%s#%s: %s", p.file:match("[^/]*$"), tostring(p.index), p.message)
  end
  return out
end

describe("manifests.read_dir", function()
  describe("a good directory", function()
    it("reads every object, file by file in name order", function()
      local objects, problems = read("good")
      assert.same({}, problems)
      assert.same({
        "Service kube-dns",                    -- 01-service.yaml
        "EndpointSlice kube-dns-abcde",        -- 02-documents.yaml
        "LocalRedirectPolicy node-local-dns",
        "Node node-1",                         -- 03-list.json
        "Pod node-local-dns-x",
        "BalancingPolicy global-web",          -- 04-policy.yml
        "Service web",                         -- 05-servicelist.json
      }, ids_of(objects))
    end)

    it("reads several YAML documents of one file, skipping empty and null ones", function()
      local objects = manifests.read_file(FIXTURES .. "/good/02-documents.yaml")
      assert.same({ "EndpointSlice kube-dns-abcde", "LocalRedirectPolicy node-local-dns" }, ids_of(objects))
    end)

    it("keeps each item of a List with its own kind", function()
      local objects = manifests.read_file(FIXTURES .. "/good/03-list.json")
      assert.same({ "Node node-1", "Pod node-local-dns-x" }, ids_of(objects))
    end)

    it("gives the items of a typed list (ServiceList) the list's item kind", function()
      local objects = manifests.read_file(FIXTURES .. "/good/05-servicelist.json")
      assert.same({ "Service web" }, ids_of(objects))
    end)

    it("skips other extensions, subdirectories and hidden files", function()
      for _, obj in ipairs((read("good"))) do
        assert.is_not.equal("hidden", obj.metadata.name)
        assert.is_not.equal("nested", obj.metadata.name)
      end
    end)

    it("reads YAML values as cjson would give them", function()
      local svc = manifests.read_file(FIXTURES .. "/good/01-service.yaml")[1]
      assert.equals(53, svc.spec.ports[1].port)
      assert.equals(53, svc.spec.ports[1].targetPort)
      assert.equals("dns-tcp", svc.spec.ports[2].targetPort)
      assert.equals("10.96.0.10", svc.spec.clusterIPs[1])
      assert.same({}, svc.spec.externalIPs)
      assert.same({}, svc.spec.sessionAffinityConfig)
      local policy = manifests.read_file(FIXTURES .. "/good/04-policy.yml")[1]
      assert.equals("80", policy.spec.frontend.addressMatcher.toPorts[1].port)
      assert.equals("4242", policy.metadata.annotations["balancing.elf.io/serviceId"])
    end)

    it("turns a YAML null into cjson.null, as a JSON null", function()
      local svc = manifests.read_file(FIXTURES .. "/good/01-service.yaml")[1]
      assert.equals(cjson.null, svc.metadata.labels)
    end)

    it("gives the same tables for the same object in YAML and in JSON", function()
      local objects, problems = read("same")
      assert.same({}, problems)
      assert.equals(2, #objects)
      assert.same(objects[2], objects[1])
    end)

    it("gives objects the store accepts", function()
      local store = store_module.new({ node_name = "node-1" })
      for _, obj in ipairs((read("good"))) do
        assert.is_true(store:upsert(obj))
      end
      assert.same({ "LocalRedirectPolicy/node-local-dns" },
        { "LocalRedirectPolicy/" .. store:policies_claiming("LocalRedirectPolicy", "10.96.0.10:53/TCP")[1]
          .metadata.name })
      assert.equals(1, #store:endpoint_slices_of("kube-system", "kube-dns"))
    end)

    it("reads an empty directory as no objects and no problems", function()
      local objects, problems = read("empty")
      assert.same({}, objects)
      assert.same({}, problems)
    end)

    it("accepts the directory with a trailing slash", function()
      local objects = manifests.read_dir(FIXTURES .. "/good/")
      assert.equals(7, #objects)
    end)
  end)

  describe("a directory with broken files", function()
    local objects, problems
    setup(function()
      objects, problems = read("broken")
    end)

    it("still reads every object that parses", function()
      assert.same({ "Service first", "Pod p1", "Pod p2", "Pod p3", "Node n1", "Node last", "Node h1", "Node h3" },
        ids_of(objects))
    end)

    it("reports each problem with its file and document, in file order", function()
      assert.same({
        "b-truncated.json#nil: not valid JSON: Expected comma or object end but found T_END at character 51",
        "c-bad-indent.yaml#nil: not valid YAML: 4:2: did not find expected key",
        'd-documents.yaml#2: kind is missing (metadata.name "no-kind")',
        "d-documents.yaml#3: not an object but string",
        "d-documents.yaml#4: not an object but a list",
        "d-documents.yaml#6: not valid YAML: 16:10: did not find expected ',' or ']'",
        "e-list.json#nil: items[2]: not an object with a kind",
        "e-list.json#nil: items[3]: not an object with a kind",
        "g-array.json#nil: not an object but a list",
        "h-header.yaml#2: not valid YAML: 7:19: did not find expected ',' or ']'",
      }, problem_list(problems))
    end)

    it("counts documents after a comment header as the YAML parser does", function()
      local file_objects, file_problems = manifests.read_file(FIXTURES .. "/broken/h-header.yaml")
      assert.same({ "Node h1", "Node h3" }, ids_of(file_objects))
      assert.equals(2, file_problems[1].index)
    end)

    it("names the file by its path in the directory", function()
      assert.equals(FIXTURES .. "/broken/b-truncated.json", problems[1].file)
    end)
  end)

  describe("reading one file", function()
    local dir
    before_each(function()
      dir = scratch.temp_dir()
    end)
    after_each(function()
      scratch.remove_dir(dir)
    end)

    it("reads a large List whole", function()
      local items = {}
      for i = 1, 5000 do
        items[i] = string.format('{"kind": "Service", "metadata": {"name": "svc-%d", "namespace": "ns"}}', i)
      end
      scratch.write_file(dir .. "/list.json", '{"kind": "List", "items": [' .. table.concat(items, ",\n") .. "]}\n")
      local objects, problems = manifests.read_file(dir .. "/list.json")
      assert.same({}, problems)
      assert.equals(5000, #objects)
      assert.equals("svc-5000", objects[5000].metadata.name)
    end)

    it("reads a file whose size is not known beforehand (a pipe)", function()
      local path = dir .. "/pipe.json"
      assert.equals(0, os.execute("mkfifo " .. scratch.quote(path)))
      -- the writer waits for the reader to open the pipe
      assert.equals(0, os.execute("(printf '%s' " .. scratch.quote('{"kind": "Service", "metadata": {"name": "p"}}')
        .. " > " .. scratch.quote(path) .. " &)"))
      local objects, problems = manifests.read_file(path)
      assert.same({}, problems)
      assert.equals("p", objects[1].metadata.name)
    end)

    it("reports a directory named like a manifest as a file it cannot read", function()
      assert.equals(0, os.execute("mkdir " .. scratch.quote(dir .. "/odd.json")))
      local objects, problems = manifests.read_file(dir .. "/odd.json")
      assert.same({}, objects)
      assert.same({ { file = dir .. "/odd.json", message = "cannot read: Is a directory" } }, problems)
    end)
  end)

  describe("an unreadable directory", function()
    it("is an error naming the directory and the reason", function()
      local objects, err = manifests.read_dir(FIXTURES .. "/missing")
      assert.is_nil(objects)
      assert.equals("manifest directory " .. FIXTURES .. "/missing: No such file or directory", err)
    end)

    it("is an error when the path is a file", function()
      local objects, err = manifests.read_dir(FIXTURES .. "/good/01-service.yaml")
      assert.is_nil(objects)
      assert.matches("^manifest directory .*01%-service%.yaml: Not a directory$", err)
    end)
  end)

  describe("without LuaFileSystem", function()
    local saved_loaded, saved_preload
    before_each(function()
      saved_loaded, saved_preload = package.loaded.lfs, package.preload.lfs
      package.loaded.lfs = nil
      package.preload.lfs = function() error("lfs hidden by the spec") end
    end)
    after_each(function()
      package.loaded.lfs, package.preload.lfs = saved_loaded, saved_preload
    end)

    it("lists the directory through the FFI, in the same order", function()
      local objects, problems = manifests.read_dir(FIXTURES .. "/good")
      assert.same({}, problems)
      assert.equals(7, #objects)
      assert.equals("kube-dns", objects[1].metadata.name)
      assert.equals("web", objects[7].metadata.name)
    end)

    it("reports an unreadable directory the same way", function()
      local objects, err = manifests.read_dir(FIXTURES .. "/missing")
      assert.is_nil(objects)
      assert.equals("manifest directory " .. FIXTURES .. "/missing: No such file or directory", err)
      objects, err = manifests.read_dir(FIXTURES .. "/good/01-service.yaml")
      assert.is_nil(objects)
      assert.matches("^manifest directory .*01%-service%.yaml: Not a directory$", err)
    end)
  end)
end)
