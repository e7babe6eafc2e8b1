-- An override of balancing.reconcile.service (docs/lua-hooks.md): the
-- Services of one namespace are left to kube-proxy — the agent programs no
-- frontend for them, so their connections go out to the ClusterIP as they
-- would without Balancing, and kube-proxy's rules serve them.
--
-- Mount it as balancing/reconcile/service.lua under --lua-dir (the ConfigMap
-- of deploy/); preview it first with
--   balancing-agent plan --manifests DIR --lua-dir examples/overrides/kube-proxy-namespace/lua
--
-- Kubernetes' own way is per Service: the label
-- service.kubernetes.io/service-proxy-name (API.md). This override does it
-- for a whole namespace without touching its Services, e.g. while a team
-- moves over. Policies whose serviceMatcher names such a Service are not
-- affected (they are reconciled by their own modules).
local store_module = require("balancing.store")

-- The namespace left to kube-proxy.
local LEFT_TO_KUBE_PROXY = "legacy"

local host = package.loaded["balancing.host"]
local builtin_dir = type(host) == "table" and host.builtin_dir or "lua"
local builtin = dofile(builtin_dir .. "/balancing/reconcile/service.lua")

local M = {}

function M.desired(store, ctx, namespace, name)
  if namespace ~= LEFT_TO_KUBE_PROXY then
    return builtin.desired(store, ctx, namespace, name)
  end
  -- the owner's entries with no frontend: what the agent programmed for it
  -- before is removed, as for a deleted Service
  local entries = { owner = store_module.service_owner(namespace, name), frontends = {} }
  local notices = { { message = "Service left to kube-proxy by an override", fields = { namespace = namespace,
    service = name } } }
  return entries, {}, notices
end

return M
