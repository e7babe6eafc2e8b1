-- The API server as the agent's source: the kinds reconciliation reads,
-- followed with core.kube_client (LIST then WATCH, in C on the loop), each
-- kind's pages and lines into the store through balancing.source; and the
-- identity annotations this agent writes (balancing.identity) sent as merge
-- patches.
--
--   local src, err = kube_source.new(store, { access = access, node_name = "n1",
--     service_proxy_name = nil, stall_seconds = 150 })
--   src:on_change(function() ... end) -- once per loop turn that changed the store
--   src:synced()                      -- every kind listed completely once
--   src:follow_pods_as_needed()       -- the Pod watch to the scope the policies need (on_change does it)
--   src:take_received()               -- when this turn's changes came (for latency)
--   src:write_identity([owners])      -- PATCH what identity says is missing (after a round over owners)
--   src:stats()                       -- per kind: state, restarts, relists, events
--   src:close()
--
-- Which objects, and why:
--   Services and EndpointSlices  without the headless label, and without a
--     service-proxy-name label unless --service-proxy-name is given (kube-
--     proxy's selector; balancing.service_spec decides the rest);
--   Nodes                        all: node IDs must be unique in the cluster,
--     and BalancingPolicy's hostPort and nodeProxy modes use other nodes'
--     addresses;
--   Pods                         Running ones (a pod that is not Running is
--     never a backend nor a client) of this node only (spec.nodeName): a
--     LocalRedirectPolicy's backends, loop avoidance and events need no
--     other. While a BalancingPolicy sends to pods (serviceEndpoint), whose
--     backends can be on any node, those of every node: the watch is started
--     again with the wider selector, and narrowed again when no such policy
--     is left, so that a cluster's pods are held only when they matter. Each
--     is trimmed (balancing.trim) to the few fields reconciliation and events
--     read;
--   LocalRedirectPolicies, BalancingPolicies  all (cluster-scoped); when
--     their CRDs are not installed the kinds read as empty, one log line
--     says so, and they are listed again now and then.
local cjson = require("cjson")
local core = require("balancing.core")
local identity = require("balancing.identity")
local log = require("balancing.log")
local object = require("balancing.object")
local source = require("balancing.source")
local store_module = require("balancing.store")
local system = require("system")

local M = {}

local KubeSource = {}
KubeSource.__index = KubeSource

local CRD_GROUP_PATH = "/apis/balancing.elf.io/v1beta1/"
local HEADLESS = "!service.kubernetes.io/headless"
local NO_PROXY_NAME = "!service.kubernetes.io/service-proxy-name"
-- Nothing for this long (a real server sends a bookmark about every minute)
-- and the watch is taken for stalled and started again.
M.DEFAULT_STALL_SECONDS = 150
-- A patch that failed (not a conflict: the watch brings the newer object)
-- is tried again after this long.
local IDENTITY_RETRY_SECONDS = 2

local function escape(text)
  return (text:gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

local function label_selector(service_proxy_name)
  local requirements = { HEADLESS }
  if not service_proxy_name then
    requirements[2] = NO_PROXY_NAME
  end
  return "labelSelector=" .. escape(table.concat(requirements, ","))
end

-- The Pods followed: this node's ("node") or every node's ("cluster").
function M.pod_query(scope, node_name)
  if scope == "node" then
    return "fieldSelector=" .. escape("spec.nodeName=" .. node_name .. ",status.phase=Running")
  end
  return "fieldSelector=" .. escape("status.phase=Running")
end

-- "cluster" while a BalancingPolicy sends to pods: they can be on any node.
function M.pod_scope_wanted(store)
  for _, policy in ipairs(store:list("BalancingPolicy")) do
    if object.field(policy, "spec", "backend", "serviceEndpoint") ~= nil then
      return "cluster"
    end
  end
  return "node"
end

-- The kinds in the order they are listed: what reconciliation needs first.
function M.kinds(options)
  local services = label_selector(options.service_proxy_name)
  return {
    { kind = "Node", path = "/api/v1/nodes" },
    { kind = "Service", path = "/api/v1/services", query = services },
    { kind = "EndpointSlice", path = "/apis/discovery.k8s.io/v1/endpointslices", query = services },
    { kind = "Pod", path = "/api/v1/pods", query = M.pod_query("node", options.node_name) },
    { kind = "LocalRedirectPolicy", path = CRD_GROUP_PATH .. "localredirectpolicies", optional = true,
      patch_path = CRD_GROUP_PATH .. "localredirectpolicies/" },
    { kind = "BalancingPolicy", path = CRD_GROUP_PATH .. "balancingpolicies", optional = true,
      patch_path = CRD_GROUP_PATH .. "balancingpolicies/" },
  }
end

-- The C watch's sink for one kind: balancing.source's answers in the
-- watch's terms, and the time each change came.
-- A full collection every this many pages of a LIST: decoding a page makes
-- several times its size in garbage and keeps a little of it; collected
-- after each page, the next page reuses that memory instead of spreading
-- the survivors over ever more of it. With the store's objects kept as text
-- (balancing.packed) the live heap is small and a collection cheap
-- (docs/benchmarks.md, "Agent at scale").
M.PAGES_PER_COLLECTION = 1

local function sink_of(self, src)
  local pages = 0
  return {
    list_page = function(body)
      local page, err = src:list_page(body)
      pages = pages + 1
      if pages % M.PAGES_PER_COLLECTION == 0 then
        collectgarbage()
      end
      if not page then
        return nil, err
      end
      if page.continue then
        return page.continue
      end
      self.received[#self.received + 1] = system.monotime()
      return true
    end,
    list_restarted = function()
      src:restart_list()
    end,
    watch_line = function(line)
      local received = system.monotime() -- before it is decoded and ingested: that is part of the latency
      local what = src:watch_line(line)
      if what == "event" then
        self.received[#self.received + 1] = received
      end
      return what
    end,
    resource_version = function()
      return src.resource_version
    end,
  }
end

function M.new(store, options)
  local client, err = core.kube_client(options.access)
  if not client then
    return nil, err
  end
  local self = setmetatable({ store = store, client = client, node_name = options.node_name,
    sources = {}, kinds = M.kinds(options), received = {}, patching = {}, pod_scope = "node", refused = {},
    counters = { patches = 0, patch_conflicts = 0, patch_errors = 0 } }, KubeSource)
  for _, kind in ipairs(self.kinds) do
    local src = source.new(store, kind.kind)
    self.sources[kind.kind] = src
    local ok, watch_err = client:watch({ kind = kind.kind, path = kind.path, query = kind.query,
      optional = kind.optional, page_size = options.page_size,
      stall_seconds = options.stall_seconds or M.DEFAULT_STALL_SECONDS,
      backoff_initial = options.backoff_initial, backoff_max = options.backoff_max,
      sink = sink_of(self, src) })
    if not ok then
      client:close()
      return nil, watch_err
    end
  end
  return self
end

-- The Pod watch widened or narrowed to what the policies now need (see the
-- header); the kind is not synced again until its new list is complete.
function KubeSource:follow_pods_as_needed()
  local wanted = M.pod_scope_wanted(self.store)
  if wanted == self.pod_scope then
    return
  end
  log.info("following pods", { scope = wanted == "cluster" and "every node (a BalancingPolicy sends to pods)"
    or "this node" })
  local ok, err = self.client:rewatch("Pod", M.pod_query(wanted, self.node_name))
  if ok then
    self.pod_scope = wanted
  else
    log.error("pods not followed again", { error = tostring(err) })
  end
end

function KubeSource:on_change(fn)
  self.client:on_turn(function()
    self:follow_pods_as_needed()
    fn()
  end)
end

function KubeSource:synced()
  for _, stats in pairs(self.client:stats()) do
    if not stats.synced then
      return false
    end
  end
  return true
end

-- The monotonic times (seconds) the changes since the last call came.
function KubeSource:take_received()
  local received = self.received
  self.received = {}
  return received
end

function KubeSource:stats()
  return self.client:stats()
end

local function patch_path(self, kind, name)
  if kind == "Node" then
    return "/api/v1/nodes/" .. escape(name)
  end
  for _, k in ipairs(self.kinds) do
    if k.kind == kind then
      return k.patch_path .. escape(name)
    end
  end
end

-- One merge patch in flight per object: a conflict (409: another agent
-- wrote first) needs nothing more, for the watch brings the newer object and
-- with it a new sync that asks identity again; another failure is tried
-- again a little later.
local function send_patch(self, kind, name, patch)
  local path = patch_path(self, kind, name)
  local version = patch.metadata.resourceVersion
  if self.patching[path] or (version ~= nil and self.refused[path] == version) then
    return -- in flight, or refused for this very version of the object
  end
  self.patching[path] = true
  self.counters.patches = self.counters.patches + 1
  local ok, err = self.client:request({ method = "PATCH", path = path,
    content_type = "application/merge-patch+json", body = cjson.encode(patch),
    on_done = function(status, body, transport_error)
      self.patching[path] = nil
      if status >= 200 and status < 300 then
        self.refused[path] = nil
        log.info("annotated", { kind = kind, name = name, annotations = patch.metadata.annotations })
      elseif status == 409 then
        -- another writer came first: the watch brings the newer object, and
        -- a little later identity is asked again with it (a kubelet's update
        -- of the Node alone reconciles nothing, so no round would ask)
        self.counters.patch_conflicts = self.counters.patch_conflicts + 1
        log.debug("annotation conflict: the newer object decides", { kind = kind, name = name })
        self.client:after(IDENTITY_RETRY_SECONDS, function() self:write_identity() end)
      else
        self.counters.patch_errors = self.counters.patch_errors + 1
        -- a transport error, 429 or 5xx passes; another answer (403: RBAC, 422) is said
        -- once per object until it changes, for trying again would only repeat it
        local passing = status == 0 or status == 429 or status >= 500
        if passing or not self.refused[path] then
          log.warn(passing and "annotation not written: retrying" or "annotation refused", { kind = kind,
            name = name, status = status, error = transport_error or body:sub(1, 300) })
        end
        if passing then
          self.client:after(IDENTITY_RETRY_SECONDS, function() self:write_identity() end)
        else
          self.refused[path] = version or true
        end
      end
    end })
  if not ok then
    self.patching[path] = nil
    log.warn("annotation not written", { kind = kind, name = name, error = tostring(err) })
  end
end

-- Whether a round over owners can have changed what identity writes: the
-- Nodes (the node tables' owner) or a policy. Other rounds — most of them,
-- one per EndpointSlice change — skip the scan of every Node and policy.
local function identity_may_change(owners)
  for owner in pairs(owners) do
    local kind = store_module.parse_owner(owner)
    if kind == "Node" or kind == "LocalRedirectPolicy" or kind == "BalancingPolicy" then
      return true
    end
  end
  return false
end

-- The node's ID and proxy IP, and every policy's serviceId, when missing;
-- with owners (a round's), only when that round can have changed them.
function KubeSource:write_identity(owners)
  if owners and not identity_may_change(owners) then
    return
  end
  local node_patch = identity.node_patch(self.store, self.node_name)
  if node_patch then
    send_patch(self, "Node", self.node_name, node_patch)
  end
  local policies, patches = identity.policies_to_patch(self.store)
  for i, policy in ipairs(policies) do
    send_patch(self, policy.kind, policy.name, patches[i])
  end
end

function KubeSource:close()
  self.client:close()
end

return M
