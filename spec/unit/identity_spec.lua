-- The annotations agents write (API.md "Annotations", issue 7 "Node
-- identity"): the merge patch for this node's nodeId and nodeProxyIpv4 and
-- for a policy's missing serviceId, with the object's resourceVersion as a
-- precondition; nothing when nothing is missing.
local identity = require("balancing.identity")
local Store = require("balancing.store")
local node = require("balancing.reconcile.node")
local fx = require("fixtures.policies.builders")

local NODE_ID = "balancing.elf.io/nodeId"
local PROXY_IP = "balancing.elf.io/nodeProxyIpv4"
local SERVICE_ID = "balancing.elf.io/serviceId"

local function store_of(objects)
  local store = Store.new{ node_name = "node-1" }
  for _, obj in ipairs(objects) do
    obj.metadata.resourceVersion = obj.metadata.resourceVersion or "41"
    assert(store:upsert(obj))
  end
  return store
end

-- The object with the patch's annotations merged in (as the API server would).
local function patched(obj, patch)
  obj.metadata.annotations = obj.metadata.annotations or {}
  for key, value in pairs(patch.metadata.annotations) do
    obj.metadata.annotations[key] = value
  end
  obj.metadata.resourceVersion = tostring(tonumber(obj.metadata.resourceVersion) + 1)
  return obj
end

describe("identity", function()
  describe("this node", function()
    it("asks for a nodeId and the first InternalIP as nodeProxyIpv4 when both are missing", function()
      local store = store_of{ fx.node{ name = "node-1", internal_ip = "192.168.0.1" } }
      local patch = identity.node_patch(store, "node-1")
      assert.equals("41", patch.metadata.resourceVersion) -- the precondition
      assert.equals("192.168.0.1", patch.metadata.annotations[PROXY_IP])
      local id = tonumber(patch.metadata.annotations[NODE_ID])
      assert.is_true(id >= 1 and id <= 0xFFFFFFFF and id % 1 == 0)
    end)

    it("asks for nothing when the node has a valid unique nodeId and a proxy IP", function()
      local store = store_of{ fx.node{ name = "node-1", internal_ip = "192.168.0.1", node_id = 7,
        proxy_ip = "172.16.0.1" } }
      assert.is_nil(identity.node_patch(store, "node-1"))
    end)

    it("never overwrites an administrator's nodeProxyIpv4", function()
      local store = store_of{ fx.node{ name = "node-1", internal_ip = "192.168.0.1", proxy_ip = "172.16.0.1" } }
      local patch = identity.node_patch(store, "node-1")
      assert.is_nil(patch.metadata.annotations[PROXY_IP])
      assert.is_string(patch.metadata.annotations[NODE_ID])
    end)

    it("asks for another nodeId when its own is invalid", function()
      local store = store_of{ fx.node{ name = "node-1", internal_ip = "192.168.0.1", node_id = "0",
        proxy_ip = "172.16.0.1" } }
      local id = tonumber(identity.node_patch(store, "node-1").metadata.annotations[NODE_ID])
      assert.is_true(id ~= 0)
    end)

    it("asks for another nodeId when a node whose name sorts first holds the same one", function()
      local store = store_of{
        fx.node{ name = "node-0", internal_ip = "192.168.0.9", node_id = 7, proxy_ip = "172.16.0.9" },
        fx.node{ name = "node-1", internal_ip = "192.168.0.1", node_id = 7, proxy_ip = "172.16.0.1" },
      }
      assert.is_nil(identity.node_patch(store, "node-0")) -- it keeps 7
      local id = identity.node_patch(store, "node-1").metadata.annotations[NODE_ID]
      assert.are_not.equal("7", id)
    end)

    it("picks the same nodeId again after a restart, and one no other node holds", function()
      local store = store_of{ fx.node{ name = "node-1", internal_ip = "192.168.0.1" } }
      local first = identity.node_patch(store, "node-1").metadata.annotations[NODE_ID]
      assert.equals(first, identity.node_patch(store, "node-1").metadata.annotations[NODE_ID])
      -- another node already holds that number: node-1 is given the next free one
      local other = store_of{
        fx.node{ name = "node-0", internal_ip = "192.168.0.9", node_id = first },
        fx.node{ name = "node-1", internal_ip = "192.168.0.1" },
      }
      local second = identity.node_patch(other, "node-1").metadata.annotations[NODE_ID]
      assert.are_not.equal(first, second)
    end)

    it("agents writing their nodes' IDs in turn leave every node a distinct ID and no rejection", function()
      local nodes = {}
      for i = 1, 20 do
        nodes[i] = fx.node{ name = "node-" .. i, internal_ip = "192.168.0." .. i }
      end
      local store = store_of(nodes)
      for i = 1, 20 do -- each agent patches its own node, in turn
        local patch = identity.node_patch(store, "node-" .. i)
        assert(store:upsert(patched(nodes[i], patch)))
      end
      local _, rejections = node.desired(store, node.context(store, "node-1", false))
      assert.same({}, rejections)
      for i = 1, 20 do
        assert.is_nil(identity.node_patch(store, "node-" .. i))
      end
    end)

    it("asks for nothing while the store has no such Node", function()
      assert.is_nil(identity.node_patch(store_of{}, "node-1"))
    end)
  end)

  describe("a policy's serviceId", function()
    it("asks for the provisional ID the policy already programs, so its entries keep their ID", function()
      local policy = fx.dns_redirect{ id = false }
      local store = store_of{ policy }
      local provisional = assert(store:policy_id("LocalRedirectPolicy", "lr"))
      local patch = identity.policy_patch(store, "LocalRedirectPolicy", "lr")
      assert.equals("41", patch.metadata.resourceVersion)
      assert.equals(string.format("%d", provisional), patch.metadata.annotations[SERVICE_ID])
      assert(store:upsert(patched(policy, patch)))
      assert.same({ provisional, false }, { store:policy_id("LocalRedirectPolicy", "lr") })
      assert.is_nil(identity.policy_patch(store, "LocalRedirectPolicy", "lr"))
    end)

    it("asks for nothing when the policy's annotation is valid and its own", function()
      local store = store_of{ fx.dns_redirect{} }
      assert.is_nil(identity.policy_patch(store, "LocalRedirectPolicy", "lr"))
    end)

    it("asks for a free ID when an older policy holds the annotated one", function()
      local older = fx.dns_redirect{ name = "a", created = "2026-01-01T00:00:00Z", id = "10" }
      local younger = fx.web_balancing{ name = "b", created = "2026-02-01T00:00:00Z", id = "10" }
      local store = store_of{ older, younger }
      assert.is_nil(identity.policy_patch(store, "LocalRedirectPolicy", "a"))
      local id = identity.policy_patch(store, "BalancingPolicy", "b").metadata.annotations[SERVICE_ID]
      assert.are_not.equal("10", id)
      assert(store:upsert(patched(younger, identity.policy_patch(store, "BalancingPolicy", "b"))))
      assert.equals(tonumber(id), (store:policy_id("BalancingPolicy", "b")))
    end)

    it("asks for a free ID when the annotation is invalid", function()
      local store = store_of{ fx.dns_redirect{ id = "not-a-number" } }
      local id = tonumber(identity.policy_patch(store, "LocalRedirectPolicy", "lr").metadata.annotations[SERVICE_ID])
      assert.is_true(id >= 1 and id < 0x80000000)
    end)

    it("lists the policies that need one", function()
      local store = store_of{ fx.dns_redirect{ id = false }, fx.web_balancing{} }
      assert.same({ { kind = "LocalRedirectPolicy", name = "lr" } }, identity.policies_to_patch(store))
    end)
  end)
end)
