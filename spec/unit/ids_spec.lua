local ids = require("balancing.ids")

local function service(namespace, name, uid)
  return { kind = "Service", metadata = { namespace = namespace, name = name, uid = uid } }
end

local function policy(kind, name, annotation, created)
  return {
    kind = kind,
    metadata = {
      name = name,
      creationTimestamp = created,
      annotations = annotation and { ["balancing.elf.io/serviceId"] = annotation } or nil,
    },
  }
end

local function lrp(name, annotation, created)
  return policy("LocalRedirectPolicy", name, annotation, created)
end

local function bp(name, annotation, created)
  return policy("BalancingPolicy", name, annotation, created)
end

-- Replace the hash for one test, to force collisions.
local function with_hash(fn, body)
  local real = ids.hash
  ids.hash = fn
  local ok, err = pcall(body)
  ids.hash = real
  assert(ok, err)
end

describe("ids: Service IDs", function()
  it("are in 0x80000000..0xFFFFFFFF", function()
    local registry = ids.new()
    for i = 1, 200 do
      local id = registry:service_id(service("default", "svc-" .. i, "uid-" .. i))
      assert.is_true(id >= 0x80000000 and id <= 0xFFFFFFFF)
      assert.equals(math.floor(id), id)
    end
  end)

  it("are stable for the Service's life", function()
    local registry = ids.new()
    local id = registry:service_id(service("default", "web", "uid-1"))
    registry:service_id(service("default", "api", "uid-2"))
    assert.equals(id, registry:service_id(service("default", "web", "uid-1")))
  end)

  it("derive from the UID, so every agent computes the same one", function()
    local a, b = ids.new(), ids.new()
    b:service_id(service("other", "first", "uid-0"))
    assert.equals(a:service_id(service("default", "web", "uid-1")), b:service_id(service("default", "web", "uid-1")))
    assert.equals(0x80000000 + ids.hash("uid-1") % 0x80000000, a:service_id(service("default", "web", "uid-1")))
  end)

  it("derive from namespace/name for a Service without UID", function()
    local registry = ids.new()
    assert.equals(0x80000000 + ids.hash("default/web") % 0x80000000,
      registry:service_id(service("default", "web", nil)))
  end)

  it("are unique on the node: a collision is probed past", function()
    with_hash(function() return 7 end, function()
      local registry = ids.new()
      local first = registry:service_id(service("default", "a", "uid-a"))
      local second = registry:service_id(service("default", "b", "uid-b"))
      assert.equals(0x80000007, first)
      assert.equals(0x80000008, second)
      assert.equals(first, registry:service_id(service("default", "a", "uid-a")))
    end)
  end)

  it("wrap from 0xFFFFFFFF to 0x80000000 when probing", function()
    with_hash(function() return 0x7FFFFFFF end, function()
      local registry = ids.new()
      assert.equals(0xFFFFFFFF, registry:service_id(service("default", "a", "uid-a")))
      assert.equals(0x80000000, registry:service_id(service("default", "b", "uid-b")))
    end)
  end)

  it("are released on deletion", function()
    with_hash(function() return 7 end, function()
      local registry = ids.new()
      local id = registry:service_id(service("default", "a", "uid-a"))
      registry:release_service(service("default", "a", "uid-a"))
      assert.is_nil(registry:lookup(id))
      assert.equals(id, registry:service_id(service("default", "b", "uid-b")))
    end)
  end)

  it("start over for a Service created again under the same name with a new UID", function()
    local registry = ids.new()
    local old = registry:service_id(service("default", "web", "uid-1"))
    local new = registry:service_id(service("default", "web", "uid-2"))
    assert.are_not.equal(old, new)
    assert.is_nil(registry:lookup(old))
    assert.same({ kind = "Service", namespace = "default", name = "web" }, registry:lookup(new))
  end)

  it("are not released by a late deletion of the previous UID", function()
    local registry = ids.new()
    registry:service_id(service("default", "web", "uid-1"))
    local new = registry:service_id(service("default", "web", "uid-2"))
    registry:release_service(service("default", "web", "uid-1"))
    assert.equals("web", registry:lookup(new).name)
  end)

  it("need a namespace and a name", function()
    local id, err = ids.new():service_id({ kind = "Service", metadata = { name = "x" } })
    assert.is_nil(id)
    assert.matches("metadata.namespace", err, 1, true)
  end)

  it("map back to the Service", function()
    local registry = ids.new()
    local id = registry:service_id(service("kube-system", "kube-dns", "uid-dns"))
    assert.same({ kind = "Service", namespace = "kube-system", name = "kube-dns" }, registry:lookup(id))
    assert.is_nil(registry:lookup(0x80000000 + (id - 0x80000000 + 1) % 0x80000000))
  end)
end)

-- register(registry, obj) → the policy's ID, as the store settles it
-- when the policy enters the store and reconcile then reads it.
local function register(registry, obj)
  assert(registry:register_policy(obj))
  return registry:policy_id(obj)
end

describe("ids: policy IDs", function()
  it("come from the balancing.elf.io/serviceId annotation", function()
    local id, provisional = register(ids.new(), lrp("dns", "1234"))
    assert.equals(1234, id)
    assert.is_false(provisional)
  end)

  it("map back to the policy", function()
    local registry = ids.new()
    register(registry, bp("global", "77"))
    assert.same({ kind = "BalancingPolicy", namespace = "", name = "global" }, registry:lookup(77))
    assert.is_nil(registry:lookup(78))
  end)

  describe("are settled when the policy is registered; reading one changes nothing", function()
    it("a policy not registered has none, and asking gives it none", function()
      local registry = ids.new()
      local id, err = registry:policy_id(lrp("dns"))
      assert.is_nil(id)
      assert.equals('LocalRedirectPolicy "dns": not registered (no policy ID yet)', err)
      assert.same({}, registry.policies)
      assert.same({}, registry.provisional_by_id)
    end)

    it("a registered policy's ID reads the same however often, in any order", function()
      with_hash(function() return 9 end, function()
        local registry = ids.new()
        assert(registry:register_policy(lrp("b")))
        assert(registry:register_policy(lrp("a")))
        for _ = 1, 3 do
          assert.equals(11, registry:policy_id(lrp("a")))
          assert.equals(10, registry:policy_id(lrp("b")))
        end
      end)
    end)
  end)

  describe("a missing annotation gives a provisional ID", function()
    it("in 1..0x7FFFFFFF, flagged provisional", function()
      local id, provisional = register(ids.new(), lrp("dns"))
      assert.is_true(provisional)
      assert.is_true(id >= 1 and id <= 0x7FFFFFFF)
    end)

    it("derived from kind and name", function()
      assert.equals(1 + ids.hash("LocalRedirectPolicy/dns") % 0x7FFFFFFF, register(ids.new(), lrp("dns")))
      assert.equals(register(ids.new(), bp("x")), register(ids.new(), bp("x")))
    end)

    it("stable across versions of the policy", function()
      local registry = ids.new()
      local id = register(registry, lrp("dns"))
      register(registry, lrp("other"))
      assert.equals(id, register(registry, lrp("dns")))
    end)

    it("probed past annotated and other provisional IDs", function()
      with_hash(function() return 9 end, function()
        local registry = ids.new()
        register(registry, lrp("annotated", "10"))
        assert.equals(11, register(registry, lrp("first")))
        assert.equals(12, register(registry, bp("second")))
      end)
    end)

    it("given up when a policy's annotation claims it: that policy is settled on another at once", function()
      with_hash(function() return 9 end, function()
        local registry = ids.new()
        assert.equals(10, register(registry, lrp("provisional")))
        local ok, displaced = registry:register_policy(bp("annotated", "10"))
        assert.is_true(ok)
        assert.same({ kind = "LocalRedirectPolicy", name = "provisional" }, displaced)
        local id, provisional = registry:policy_id(lrp("provisional"))
        assert.equals(11, id)
        assert.is_true(provisional)
        assert.equals("annotated", registry:lookup(10).name)
        assert.equals("provisional", registry:lookup(11).name)
      end)
    end)

    it("displaces no one when the annotated ID is nobody's provisional ID", function()
      local registry = ids.new()
      register(registry, lrp("provisional"))
      assert.same({ true }, { registry:register_policy(bp("annotated", "10")) })
    end)

    it("mapped back to the policy", function()
      local registry = ids.new()
      local id = register(registry, lrp("dns"))
      assert.same({ kind = "LocalRedirectPolicy", namespace = "", name = "dns" }, registry:lookup(id))
    end)

    it("replaced by the annotation once an agent writes it", function()
      local registry = ids.new()
      local provisional = register(registry, lrp("dns"))
      assert.equals(500, register(registry, lrp("dns", "500")))
      assert.is_nil(registry:lookup(provisional))
    end)

    it("released with the policy", function()
      local registry = ids.new()
      local id = register(registry, lrp("dns"))
      registry:release_policy(lrp("dns"))
      assert.is_nil(registry:lookup(id))
      assert.is_nil(registry:policy_id(lrp("dns")))
    end)
  end)

  describe("an invalid annotation is an error naming it", function()
    local function invalid(text, pattern)
      local id, err = register(ids.new(), lrp("dns", text))
      assert.is_nil(id)
      assert.matches("annotation balancing.elf.io/serviceId: ", err, 1, true)
      assert.matches(pattern, err, 1, true)
    end

    it("not a number", function() invalid("abc", '"abc" is not a decimal uint32') end)
    it("negative", function() invalid("-1", '"-1" is not a decimal uint32') end)
    it("a fraction", function() invalid("1.5", '"1.5" is not a decimal uint32') end)
    it("empty", function() invalid("", '"" is not a decimal uint32') end)
    it("hexadecimal", function() invalid("0x10", '"0x10" is not a decimal uint32') end)
    it("zero", function() invalid("0", '"0" is zero') end)
    it("beyond uint32", function() invalid("4294967296", '"4294967296" is not a decimal uint32') end)
    it("in the Service range", function() invalid("2147483648", '"2147483648" is in the range of Service IDs') end)
  end)

  it("accepts the largest policy ID", function()
    assert.equals(0x7FFFFFFF, register(ids.new(), lrp("dns", "2147483647")))
  end)

  describe("two policies with one annotation", function()
    it("the older by creationTimestamp keeps it; the other's error names it", function()
      local registry = ids.new()
      register(registry, bp("young", "42", "2024-02-01T00:00:00Z"))
      assert.equals(42, register(registry, lrp("old", "42", "2024-01-01T00:00:00Z")))
      local id, err = registry:policy_id(bp("young", "42", "2024-02-01T00:00:00Z"))
      assert.is_nil(id)
      assert.matches('42 is already used by LocalRedirectPolicy "old"', err, 1, true)
      assert.equals("old", registry:lookup(42).name)
    end)

    it("with the same creationTimestamp, the first name keeps it", function()
      local registry = ids.new()
      register(registry, lrp("b", "42", "2024-01-01T00:00:00Z"))
      register(registry, lrp("a", "42", "2024-01-01T00:00:00Z"))
      assert.is_nil(registry:policy_id(lrp("b", "42", "2024-01-01T00:00:00Z")))
      assert.equals(42, registry:policy_id(lrp("a", "42", "2024-01-01T00:00:00Z")))
    end)

    it("a policy without creationTimestamp counts as newer", function()
      local registry = ids.new()
      register(registry, lrp("a", "42"))
      assert.equals(42, register(registry, lrp("z", "42", "2024-01-01T00:00:00Z")))
      assert.is_nil(registry:policy_id(lrp("a", "42")))
    end)

    it("the other gets the ID once the older is deleted", function()
      local registry = ids.new()
      register(registry, lrp("old", "42", "2024-01-01T00:00:00Z"))
      assert.is_nil(register(registry, bp("young", "42", "2024-02-01T00:00:00Z")))
      registry:release_policy(lrp("old", "42", "2024-01-01T00:00:00Z"))
      assert.equals(42, registry:policy_id(bp("young", "42", "2024-02-01T00:00:00Z")))
    end)

    it("the other gets the ID once the older's annotation changes", function()
      local registry = ids.new()
      register(registry, lrp("old", "42", "2024-01-01T00:00:00Z"))
      register(registry, bp("young", "42", "2024-02-01T00:00:00Z"))
      register(registry, lrp("old", "43", "2024-01-01T00:00:00Z"))
      assert.equals(42, registry:policy_id(bp("young", "42", "2024-02-01T00:00:00Z")))
      assert.equals(43, registry:policy_id(lrp("old", "43", "2024-01-01T00:00:00Z")))
    end)
  end)

  it("refuses a policy without kind or name", function()
    local ok, err = ids.new():register_policy({ metadata = { name = "x" } })
    assert.is_nil(ok)
    assert.matches("kind and metadata.name", err, 1, true)
    local id
    id, err = ids.new():policy_id({ metadata = { name = "x" } })
    assert.is_nil(id)
    assert.matches("kind and metadata.name", err, 1, true)
  end)
end)

describe("ids.older", function()
  it("orders by creationTimestamp, then name, then kind", function()
    assert.is_true(ids.older(lrp("z", nil, "2024-01-01T00:00:00Z"), lrp("a", nil, "2024-01-02T00:00:00Z")))
    assert.is_true(ids.older(lrp("a", nil, "2024-01-01T00:00:00Z"), lrp("b", nil, "2024-01-01T00:00:00Z")))
    assert.is_true(ids.older(bp("a"), lrp("a")))
    assert.is_false(ids.older(lrp("a"), lrp("a")))
  end)

  it("counts a policy without creationTimestamp as newer", function()
    assert.is_true(ids.older(lrp("z", nil, "2024-01-01T00:00:00Z"), lrp("a")))
    assert.is_false(ids.older(lrp("a"), lrp("z", nil, "2024-01-01T00:00:00Z")))
  end)
end)

describe("ids.hash", function()
  it("is 32-bit FNV-1a", function()
    assert.equals(0x811c9dc5, ids.hash(""))
    assert.equals(0xe40c292c, ids.hash("a"))
    assert.equals(0xbf9cf968, ids.hash("foobar"))
  end)
end)
