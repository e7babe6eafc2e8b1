local cjson = require("cjson")
local object = require("balancing.object")

describe("reading decoded Kubernetes objects", function()
  it("reads a JSON null as an absent field", function()
    assert.is_nil(object.present(cjson.null))
    assert.is_true(object.absent(cjson.null))
    assert.is_true(object.absent(nil))
    assert.is_false(object.absent(false))
    assert.equals(0, object.present(0))
  end)

  it("follows a nested path and stops at the first absent or non-object step", function()
    local pod = { metadata = { labels = { app = "dns" }, annotations = cjson.null }, spec = "x" }
    assert.equals("dns", object.field(pod, "metadata", "labels", "app"))
    assert.is_nil(object.field(pod, "metadata", "annotations", "a"))
    assert.is_nil(object.field(pod, "spec", "nodeName"))
    assert.is_nil(object.field(pod, "status", "podIP"))
  end)

  it("tells a JSON list from an object", function()
    assert.is_true(object.is_list({ "a", "b" }))
    assert.is_true(object.is_list({}))
    assert.is_false(object.is_list({ a = 1 }))
    assert.is_false(object.is_list({ "a", b = 1 }))
    assert.is_false(object.is_list("a"))
  end)

  it("gives an empty name and a read-only empty metadata when they are missing", function()
    assert.equals("", object.name({}))
    assert.equals("", object.name({ metadata = { name = cjson.null } }))
    assert.equals("web", object.name({ metadata = { name = "web" } }))
    assert.has_error(function()
      object.metadata({}).name = "x"
    end)
  end)

  it("orders objects by namespace, cluster-scoped first, then name", function()
    local list = {
      { metadata = { namespace = "b", name = "a" } },
      { metadata = { namespace = "a", name = "z" } },
      { metadata = { name = "policy" } },
      { metadata = { namespace = "a", name = "b" } },
    }
    table.sort(list, object.by_namespace_name)
    local names = {}
    for i, obj in ipairs(list) do
      names[i] = (obj.metadata.namespace or "") .. "/" .. obj.metadata.name
    end
    assert.same({ "/policy", "a/b", "a/z", "b/a" }, names)
  end)
end)
