-- core.json_strip (core/json_strip.c): the members the agent never reads
-- (metadata.managedFields, the kubectl last-applied annotation) removed from
-- JSON text before it is decoded, as the API client does to each LIST page
-- and watch line. Whatever the text, what is left decodes to the same
-- document minus those members. No kernel: the C function through its
-- binding (built with the core module).
local cjson = require("cjson")
local core_ok, core = pcall(require, "balancing.core")

local LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

-- The document without the stripped members, as trim would leave it.
local function without(value)
  if type(value) ~= "table" then
    return value
  end
  local out = {}
  for k, v in pairs(value) do
    if k ~= "managedFields" and k ~= LAST_APPLIED then
      out[k] = without(v)
    end
  end
  return out
end

describe("core.json_strip", function()
  before_each(function()
    assert(core_ok, "balancing.core does not load: " .. tostring(core))
  end)

  it("removes the members wherever they are, with their commas", function()
    local text = '{"managedFields":[{"a":1}],"metadata":{"name":"x","managedFields":[],"annotations":'
      .. '{"a":"1","kubectl.kubernetes.io/last-applied-configuration":"{\\"big\\":\\"}\\"}","b":"2"}},'
      .. '"items":[{"managedFields":{"x":[1,2,{"y":"]"}]}}]}'
    assert.equals('{"metadata":{"name":"x","annotations":{"a":"1","b":"2"}},"items":[{}]}', core.json_strip(text))
  end)

  it("keeps strings that only look like those keys, and values named so", function()
    local text = '{"note":"\\"managedFields\\":[1]","list":["managedFields"],"managedFieldsX":1}'
    assert.equals(text, core.json_strip(text))
  end)

  it("leaves malformed text for the decoder to refuse", function()
    for _, text in ipairs({ '{"managedFields":[1,2', '{"managedFields":', '{"a":"unterminated', "", "null" }) do
      local stripped = core.json_strip(text)
      assert.equals(pcall(cjson.decode, text), pcall(cjson.decode, stripped))
    end
  end)

  it("gives the same document minus the members, on every example manifest and a watch event of each", function()
    local manifests = require("balancing.manifests")
    local objects = assert(manifests.read_dir("examples/cluster/manifests"))
    assert.is_true(#objects > 20)
    for _, obj in ipairs(objects) do
      obj.metadata.managedFields = { { manager = "kubectl", fieldsV1 = { ["f:spec"] = { ["f:ports"] = {} } } } }
      obj.metadata.annotations = obj.metadata.annotations or {}
      obj.metadata.annotations[LAST_APPLIED] = cjson.encode(obj)
      for _, text in ipairs({ cjson.encode(obj), cjson.encode({ type = "MODIFIED", object = obj }) }) do
        local stripped = core.json_strip(text)
        assert.is_true(#stripped < #text)
        assert.same(without(cjson.decode(text)), cjson.decode(stripped))
      end
    end
  end)

  it("gives the same document minus the members on 5,000 random documents", function()
    local seed = 12345
    local function rand(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n + 1
    end
    local keys = { "a", "managedFields", LAST_APPLIED, "b", "metadata", "x y", "q\"uote" }
    local function value(depth)
      local kind = rand(depth > 3 and 4 or 6)
      if kind == 1 then
        return rand(100)
      elseif kind == 2 then
        return ({ "s", "}", "]", ",", "\"managedFields\":", "\\" })[rand(6)]
      elseif kind == 3 then
        return rand(2) == 1
      elseif kind == 4 then
        return cjson.null
      elseif kind == 5 then
        local t = {}
        for i = 1, rand(4) - 1 do
          t[i] = value(depth + 1)
        end
        return t
      end
      local t = {}
      for _ = 1, rand(5) do
        t[keys[rand(#keys)]] = value(depth + 1)
      end
      return t
    end
    for _ = 1, 5000 do
      local doc = value(0)
      local text = cjson.encode(doc)
      assert.same(without(cjson.decode(text)), cjson.decode(core.json_strip(text)))
    end
  end)
end)
