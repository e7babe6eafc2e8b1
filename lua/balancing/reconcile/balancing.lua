-- BalancingPolicy → map entries (API.md, "BalancingPolicy").
--
--   local entries, rejections, notices = balancing.desired(store, ctx, name)
--
-- A frontend (a Service's ClusterIPs and ports, or a virtual address) is
-- balanced over backends anywhere, each at the backend port its frontend port
-- maps to:
--   serviceEndpoint, usable pods of any namespace on any node, by redirectMode:
--     podEndpoint (default)  the pod's IP;
--     hostPort               its node's first InternalIP (the pod's hostPort);
--     nodeProxy              its node's proxy IP (nodeProxyIpv4, else first
--                            InternalIP);
--     a pod whose node is unknown (or has no such address) gives no backend in
--     hostPort and nodeProxy mode, and pods that give the same address give
--     one backend (two pods on one node in hostPort mode: one backend);
--   addressEndpoint, the fixed addresses.
-- A backend is local when it is on this node (its pod's node is this node, or
-- its address is one of this node's), and local backends take the first slots.
--
-- With no backend, what happens is what would happen without the policy
-- (its entry never removes the Service's own; the lookup priority decides):
-- a serviceMatcher policy programs nothing, so the Service it stands in front
-- of serves, as after a LocalRedirectPolicy without a local backend; an
-- addressMatcher policy's virtual address has no one else to serve it, so it
-- keeps its frontends with zero slots and connects fail fast (EHOSTUNREACH,
-- with an event) rather than going to an address nothing serves.
local policy = require("balancing.reconcile.policy")
local node = require("balancing.reconcile.node")

local M = {}

local KIND = "BalancingPolicy"

local NODE_ADDRESS = {
  hostPort = node.first_internal_ip,
  nodeProxy = node.proxy_ip,
}

local function is_local(ctx, node_name, address)
  return (node_name ~= nil and node_name == ctx.node_name) or (ctx.addresses or {})[address] == true
end

local function endpoint_targets(store, ctx, backend)
  local targets = policy.targets()
  if backend.mode == "address" then
    for _, address in ipairs(backend.addresses) do
      targets.add(address, is_local(ctx, nil, address))
    end
    return targets.sorted()
  end
  local node_address = NODE_ADDRESS[backend.mode]
  for _, pod in ipairs(store:pods_matching(backend.selector) or {}) do
    if policy.backend_pod(backend.selector, pod) then
      local node_name = policy.pod_node(pod)
      local address
      if node_address then
        local node_object = node_name and store:node(node_name)
        address = node_object and node_address(node_object)
      else
        address = policy.pod_ipv4(pod)
      end
      if address then
        targets.add(address, is_local(ctx, node_name, address))
      end
    end
  end
  return targets.sorted()
end

local function backends(store, ctx, plan)
  local backend = plan.spec.backend
  local targets = endpoint_targets(store, ctx, backend)
  if #targets == 0 and plan.spec.frontend.mode == "service" then
    -- (the Service's own entry serves its frontend meanwhile)
    return nil, "not programmed: no backend matches (the frontend's Service serves it meanwhile)"
  end
  return backend.mode, targets
end

function M.desired(store, ctx, name)
  return policy.desired(KIND, store, ctx, name, backends)
end

return M
