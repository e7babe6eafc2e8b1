-- LocalRedirectPolicy → map entries (API.md, "LocalRedirectPolicy").
--
--   local entries, rejections, notices = localredirect.desired(store, ctx, name)
--
-- A frontend (a Service's ClusterIPs and ports, or a virtual address) is
-- redirected to the usable pods of any namespace that the backend selector
-- picks ON THIS NODE, each at the backend port its frontend port maps to. All
-- its backends are local. Without a local backend the policy programs nothing
-- at all, so the traffic resolves as the plain Service would (a Service's own
-- entry is never removed by a policy; the datapath's priority decides).
--
-- loop_pods are the policy's own backend pods: the core keeps their
-- connections to the frontends out of the redirect (node-local DNS forwarding
-- to the cluster DNS Service must not be sent back to itself).
--
-- On an agent outside the cluster (ctx.out_cluster) a LocalRedirectPolicy
-- programs nothing: such a host runs no pods, so it never has a local backend.
-- The spec is still checked, so an invalid one is reported there too.
local object = require("balancing.object")
local policy = require("balancing.reconcile.policy")

local M = {}

local KIND = "LocalRedirectPolicy"

-- This node's usable pods that the backend selector picks, by namespace/name.
local function local_backend_pods(store, ctx, backend)
  local pods = {}
  for _, pod in ipairs(store:pods_on_node(ctx.node_name) or {}) do
    if policy.pod_node(pod) == ctx.node_name and policy.backend_pod(backend.selector, pod)
        and policy.pod_ipv4(pod) then
      pods[#pods + 1] = pod
    end
  end
  table.sort(pods, object.by_namespace_name)
  return pods
end

-- Only local backends: with none, nothing (not even the loop pods), and the
-- frontend falls through to what else serves its address.
local function backends(store, ctx, plan, entries)
  local pods = local_backend_pods(store, ctx, plan.spec.backend)
  if #pods == 0 then
    return nil, string.format("not programmed: no local backend on this node (no running pod with an IPv4 "
      .. "address on node %s matches the backend selector)", tostring(ctx.node_name))
  end
  local targets = policy.targets()
  for _, pod in ipairs(pods) do
    targets.add(policy.pod_ipv4(pod), true)
    local metadata = pod.metadata
    entries.loop_pods[#entries.loop_pods + 1] = {
      namespace = metadata.namespace, name = metadata.name, uid = object.present(metadata.uid),
    }
  end
  return plan.spec.frontend.mode, targets.sorted()
end

function M.desired(store, ctx, name)
  return policy.desired(KIND, store, ctx, name, backends)
end

return M
