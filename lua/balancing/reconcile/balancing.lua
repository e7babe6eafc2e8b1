-- BalancingPolicy → map entries (API.md, "BalancingPolicy").
--
--   local entries, rejections = balancing.desired(store, ctx, name)
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
-- A BalancingPolicy with no backend still programs its frontends, with zero
-- slots: connects fail fast (EHOSTUNREACH, with an event) rather than going to
-- an address nothing serves, or silently to the Service endpoints the policy
-- was written to replace. Its frontend is fixed by the user; its backends come
-- and go.
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
  return backend.mode, endpoint_targets(store, ctx, backend)
end

function M.desired(store, ctx, name)
  return policy.desired(KIND, store, ctx, name, backends)
end

return M
