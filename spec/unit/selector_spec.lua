local cjson = require("cjson")
local selector = require("balancing.selector")

local function compile(spec)
  local compiled, err = selector.compile(spec)
  assert(compiled, err)
  return compiled
end

local function expr(key, operator, values)
  return { matchExpressions = { { key = key, operator = operator, values = values } } }
end

describe("selector.compile / matches", function()
  describe("matchLabels", function()
    it("matches a pod that has every listed label", function()
      local sel = compile({ matchLabels = { app = "dns", tier = "node" } })
      assert.is_true(sel:matches({ app = "dns", tier = "node", extra = "x" }))
    end)

    it("does not match a pod missing one listed label", function()
      local sel = compile({ matchLabels = { app = "dns", tier = "node" } })
      assert.is_false(sel:matches({ app = "dns" }))
    end)

    it("does not match a pod whose value differs", function()
      assert.is_false(compile({ matchLabels = { app = "dns" } }):matches({ app = "web" }))
    end)

    it("keeps match_labels for the store's label index", function()
      assert.same({ app = "dns" }, compile({ matchLabels = { app = "dns" } }).match_labels)
    end)
  end)

  describe("In", function()
    it("matches a pod whose value is listed", function()
      assert.is_true(compile(expr("app", "In", { "a", "b" })):matches({ app = "b" }))
    end)

    it("does not match a pod whose value is not listed", function()
      assert.is_false(compile(expr("app", "In", { "a", "b" })):matches({ app = "c" }))
    end)

    it("does not match a pod without the key", function()
      assert.is_false(compile(expr("app", "In", { "a" })):matches({ other = "a" }))
    end)
  end)

  describe("NotIn", function()
    it("matches a pod whose value is not listed", function()
      assert.is_true(compile(expr("tier", "NotIn", { "canary" })):matches({ tier = "stable" }))
    end)

    it("does not match a pod whose value is listed", function()
      assert.is_false(compile(expr("tier", "NotIn", { "canary" })):matches({ tier = "canary" }))
    end)

    it("matches a pod without the key, as Kubernetes does", function()
      assert.is_true(compile(expr("tier", "NotIn", { "canary" })):matches({ app = "x" }))
      assert.is_true(compile(expr("tier", "NotIn", { "canary" })):matches(nil))
    end)
  end)

  describe("Exists and DoesNotExist", function()
    it("Exists matches a pod with the key, whatever its value", function()
      assert.is_true(compile(expr("gpu", "Exists")):matches({ gpu = "" }))
    end)

    it("Exists does not match a pod without the key", function()
      assert.is_false(compile(expr("gpu", "Exists")):matches({ cpu = "x" }))
    end)

    it("DoesNotExist matches a pod without the key", function()
      assert.is_true(compile(expr("gpu", "DoesNotExist")):matches({ cpu = "x" }))
    end)

    it("DoesNotExist does not match a pod with the key", function()
      assert.is_false(compile(expr("gpu", "DoesNotExist")):matches({ gpu = "1" }))
    end)

    it("accepts an empty values list for Exists", function()
      assert.is_true(compile(expr("gpu", "Exists", {})):matches({ gpu = "1" }))
    end)
  end)

  describe("combination", function()
    it("requires matchLabels AND every expression", function()
      local sel = compile({
        matchLabels = { app = "dns" },
        matchExpressions = {
          { key = "tier", operator = "In", values = { "node", "cluster" } },
          { key = "canary", operator = "DoesNotExist" },
        },
      })
      assert.is_true(sel:matches({ app = "dns", tier = "node" }))
      assert.is_false(sel:matches({ app = "dns", tier = "node", canary = "yes" }))
      assert.is_false(sel:matches({ app = "dns", tier = "edge" }))
      assert.is_false(sel:matches({ app = "web", tier = "node" }))
    end)

    it("an empty selector matches everything", function()
      local sel = compile({})
      assert.is_true(sel:matches({ any = "thing" }))
      assert.is_true(sel:matches({}))
      assert.is_true(sel:matches(nil))
      assert.is_true(sel:is_empty())
    end)

    it("treats JSON null parts as absent", function()
      local sel = compile({ matchLabels = cjson.null, matchExpressions = cjson.null })
      assert.is_true(sel:matches({ x = "y" }))
      local exists = compile({ matchExpressions = { { key = "a", operator = "Exists", values = cjson.null } } })
      assert.is_true(exists:matches({ a = "1" }))
    end)

    it("treats JSON null labels as no labels", function()
      assert.is_true(compile(expr("a", "DoesNotExist")):matches(cjson.null))
      assert.is_false(compile({ matchLabels = { a = "1" } }):matches(cjson.null))
    end)

    it("works on decoded JSON", function()
      local spec = cjson.decode('{"matchLabels":{"k8s-app":"node-local-dns"},'
        .. '"matchExpressions":[{"key":"zone","operator":"NotIn","values":["b"]}]}')
      local sel = compile(spec)
      assert.is_true(sel:matches(cjson.decode('{"k8s-app":"node-local-dns","zone":"a"}')))
      assert.is_false(sel:matches(cjson.decode('{"k8s-app":"node-local-dns","zone":"b"}')))
    end)
  end)

  describe("errors name the part that does not parse", function()
    local function fails(spec, pattern)
      local compiled, err = selector.compile(spec)
      assert.is_nil(compiled)
      assert.is_string(err)
      assert.matches(pattern, err, 1, true)
    end

    it("a missing selector is an error", function()
      fails(nil, "missing")
      fails(cjson.null, "missing")
    end)

    it("a selector that is not an object", function()
      fails("app=dns", "must be an object")
    end)

    it("an unknown operator", function()
      fails(expr("a", "Foo", { "x" }), 'matchExpressions[0].operator: unknown operator "Foo"')
    end)

    it("names the position of the failing expression, counting from 0 as the API server does", function()
      fails({ matchExpressions = {
        { key = "a", operator = "Exists" },
        { key = "b", operator = "Equals", values = { "x" } },
      } }, 'matchExpressions[1].operator: unknown operator "Equals"')
    end)

    it("a missing operator", function()
      fails({ matchExpressions = { { key = "a" } } }, "matchExpressions[0].operator: missing")
    end)

    it("a missing key", function()
      fails({ matchExpressions = { { operator = "Exists" } } }, "matchExpressions[0].key: missing")
    end)

    it("values missing for In", function()
      fails(expr("a", "In"), "matchExpressions[0].values: required (non-empty) for operator In")
    end)

    it("values empty for NotIn", function()
      fails(expr("a", "NotIn", {}), "matchExpressions[0].values: required (non-empty) for operator NotIn")
    end)

    it("values given for Exists", function()
      fails(expr("a", "Exists", { "x" }), "matchExpressions[0].values: must be empty for operator Exists")
    end)

    it("values given for DoesNotExist", function()
      fails(expr("a", "DoesNotExist", { "x" }), "matchExpressions[0].values: must be empty for operator DoesNotExist")
    end)

    it("a non-string value in values", function()
      fails(expr("a", "In", { "x", 1 }), "matchExpressions[0].values[1]: must be a string")
    end)

    it("a non-string label value in matchLabels", function()
      fails({ matchLabels = { version = 2 } }, "matchLabels.version: must be a string")
    end)

    it("a null label value in matchLabels", function()
      fails({ matchLabels = { version = cjson.null } }, "matchLabels.version: must be a string, not null")
    end)

    it("matchExpressions that is not a list", function()
      fails({ matchExpressions = { key = "a", operator = "Exists" } }, "matchExpressions: must be a list")
    end)
  end)
end)
