-- The object cache: the Kubernetes objects the agent reads, the indexes
-- reconciliation needs, and the set of dirty owners an event can affect.
--
--   local store = require("balancing.store").new{ node_name = "node-1" }
--   store:ingest{ type = "MODIFIED", object = slice }
--   for owner in pairs(store:take_dirty()) do ... end   -- "service/default/web"
--
-- Every index is maintained per event from what the object was indexed under
-- before (kept per object, so a caller that changes a table in place and
-- upserts it again still unindexes correctly) and what it is indexed under now:
-- no event scans all objects, except a change of this agent's own Node's
-- labels or addresses, which can change what every owner programs.
--
-- Services and policies are checked as they enter (balancing.service_spec,
-- balancing.policy_spec) and their IDs settled there: reconcile reads the
-- checked form and never allocates an ID.
--
-- Services and EndpointSlices are kept as text (balancing.packed: the bulk
-- of a large cluster, a fifth of the memory as tables) and decoded when read;
-- a Service's checked spec is kept while something holds it (a weak cache)
-- and checked again when read after the collector took it. Other objects
-- are kept as given (decoded JSON; cjson.null counts as absent). Objects
-- must not be modified by readers; nor must the checked specs and claims
-- the accessors return (shared). Arrays of objects returned are fresh.
local ids = require("balancing.ids")
local object = require("balancing.object")
local packed = require("balancing.packed")
local policy_spec = require("balancing.policy_spec")
local service_spec = require("balancing.service_spec")

local M = {}

local Store = {}
Store.__index = Store

M.KINDS = { "Service", "EndpointSlice", "Node", "Pod", "LocalRedirectPolicy", "BalancingPolicy" }
M.CLUSTER_SCOPED = { Node = true, LocalRedirectPolicy = true, BalancingPolicy = true }
M.POLICY_KINDS = { "LocalRedirectPolicy", "BalancingPolicy" }
M.SERVICE_NAME_LABEL = "kubernetes.io/service-name"

local KNOWN = {}
for _, kind in ipairs(M.KINDS) do
  KNOWN[kind] = true
end

-- The kinds kept as text (see the top of this file).
local PACKED = { Service = true, EndpointSlice = true }

-- Where the texts live: a text arena of the C core when there is one (the
-- agent, plan, the specs' build), so that they do not sit among the Lua
-- heap's garbage, each deflated against packed.DICTIONARY (a quarter of
-- the bytes: core/text_arena.h, text_codec.h); else Lua strings.
local core_loaded, core = pcall(require, "balancing.core")
local new_text_arena = core_loaded and type(core) == "table" and core.text_arena or nil

-- The text of what the store holds of a PACKED kind (a ref into the arena,
-- or the text itself), or nil for a table.
local function held_text(self, value)
  if type(value) == "number" then
    return self.texts:get(value)
  elseif type(value) == "string" then
    return value
  end
  return nil
end

-- An object as the store holds it → the object (decoded when it is text).
local function unpacked(self, value)
  local text = held_text(self, value)
  if text then
    return packed.unpack(text)
  end
  return value
end

-- Lets go of what the store held of an object (its text in the arena).
local function release_held(self, value)
  if type(value) == "number" then
    self.texts:drop(value)
  end
end

local POLICY_PREFIX = { LocalRedirectPolicy = "localRedirect/", BalancingPolicy = "balancing/" }

local present, field = object.present, object.field

-- What an absent index entry is iterated as: one shared empty table rather
-- than a new one on every event (never written to).
local NONE = setmetatable({}, { __newindex = function()
  error("balancing.store: NONE is read-only", 2)
end })

-- Owner keys ------------------------------------------------------------------

function M.service_owner(namespace, name)
  return "service/" .. namespace .. "/" .. name
end

-- The owner of a Service known by its store key "namespace/name".
function M.service_owner_of_key(key)
  return "service/" .. key
end

function M.policy_owner(kind, name)
  return POLICY_PREFIX[kind] .. name
end

M.NODE_OWNER = "node"

local KIND_OF_PREFIX = { localRedirect = "LocalRedirectPolicy", balancing = "BalancingPolicy" }

-- parse_owner(owner) → kind, namespace, name: "Service", "ns", "web" for
-- "service/ns/web"; "BalancingPolicy", "", "p" for "balancing/p"; "Node" for
-- the node tables; nil for text that is no owner key.
function M.parse_owner(owner)
  if owner == M.NODE_OWNER then
    return "Node", "", ""
  end
  local prefix, rest = owner:match("^([^/]+)/(.+)$")
  if prefix == "service" then
    local namespace, name = rest:match("^([^/]+)/([^/]+)$")
    if namespace then
      return "Service", namespace, name
    end
  elseif KIND_OF_PREFIX[prefix] and not rest:find("/", 1, true) then
    return KIND_OF_PREFIX[prefix], "", rest
  end
  return nil
end

-- "10.96.0.10:53/UDP" from a checked address, port number and protocol: the
-- one key of a frontend, for the conflict indexes and every reason.
M.frontend_key = service_spec.frontend_key

-- Buckets: a set of objects with a count, so that the smallest candidate set
-- can be chosen without counting.
local function bucket_add(index, bucket_key, object_key, obj)
  local bucket = index[bucket_key]
  if not bucket then
    bucket = { n = 0, items = {} }
    index[bucket_key] = bucket
  end
  if bucket.items[object_key] == nil then
    bucket.n = bucket.n + 1
  end
  bucket.items[object_key] = obj
end

local function bucket_remove(index, bucket_key, object_key)
  local bucket = index[bucket_key]
  if not bucket or bucket.items[object_key] == nil then
    return
  end
  bucket.items[object_key] = nil
  bucket.n = bucket.n - 1
  if bucket.n == 0 then
    index[bucket_key] = nil
  end
end

local by_namespace_name = object.by_namespace_name

local function sorted_values(self, items, less)
  local out = {}
  for _, obj in pairs(items or NONE) do
    out[#out + 1] = unpacked(self, obj)
  end
  if #out > 1 then -- the usual index bucket holds one object
    table.sort(out, less or by_namespace_name)
  end
  return out
end

-- Construction -------------------------------------------------------------------

-- opts: node_name (this node), service_proxy_name (--service-proxy-name:
-- also serve Services labelled with it), ids (a registry to share).
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({
    node_name = opts.node_name,
    service_proxy_name = opts.service_proxy_name,
    ids = opts.ids or ids.new(),
    objects = {},    -- kind -> "ns/name" -> object
    derived = {},    -- kind -> "ns/name" -> what the object is indexed under
    counts = {},     -- kind -> number of objects
    sorted = {},     -- kind -> sorted array (cache, dropped on change; not for PACKED kinds)
    service_specs = setmetatable({}, { __mode = "v" }), -- "ns/name" -> checked spec, while held
    texts = new_text_arena and new_text_arena(packed.DICTIONARY), -- the texts of PACKED kinds (or nil: Lua strings)
    dirty = {},
    slices_by_service = {},   -- "ns/service" -> key set of EndpointSlices (see key_set_add)
    services_by_ip = {},      -- ClusterIP -> key set of Services
    services_by_frontend = {},    -- frontend key -> key set of the Services claiming it
    pods_by_node = {},        -- node name -> bucket of Pods
    pods_by_uid = {},         -- metadata.uid -> Pod (events name a client's pod by it)
    pods_by_label = {},       -- "key=value" -> bucket of Pods
    pods_by_label_key = {},   -- key -> bucket of Pods
    policies_by_frontend = {},    -- kind -> frontend key -> bucket of policies
    policies_by_service = {},     -- "ns/service" -> { ["Kind/name"] = true } (serviceMatcher)
    policies_by_selector = {},    -- kind -> "key=value" -> { [name] = true }
    policies_any_selector = {},   -- kind -> { [name] = true } (no matchLabels to index)
    node_mode_policies = {},      -- BalancingPolicy name -> true (hostPort, nodeProxy)
    policies_by_id = {},          -- annotated serviceId text -> { ["Kind/name"] = true }
  }, Store)
  for _, kind in ipairs(M.KINDS) do
    self.objects[kind] = {}
    self.derived[kind] = {}
    self.counts[kind] = 0
  end
  for _, kind in ipairs(M.POLICY_KINDS) do
    self.policies_by_frontend[kind] = {}
    self.policies_by_selector[kind] = {}
    self.policies_any_selector[kind] = {}
  end
  return self
end

-- Identity ---------------------------------------------------------------------

-- identity(obj) → kind, namespace, name, key | nil, err
local function identity(obj)
  if type(obj) ~= "table" then
    return nil, "object: not a table but " .. type(obj)
  end
  local kind = present(obj.kind)
  local name = field(obj, "metadata", "name")
  if kind == nil or kind == "" or type(kind) ~= "string" or not KNOWN[kind] then
    local label = type(name) == "string" and string.format("%q", name) or "(no metadata.name)"
    if kind == nil or kind == "" then
      return nil, "object " .. label .. ": kind is missing"
    end
    return nil, string.format("object %s: kind %q is not one of %s", label, tostring(kind),
      table.concat(M.KINDS, ", "))
  end
  if type(name) ~= "string" or name == "" then
    return nil, kind .. ": metadata.name is missing"
  end
  local namespace = ""
  if not M.CLUSTER_SCOPED[kind] then
    namespace = field(obj, "metadata", "namespace")
    if type(namespace) ~= "string" or namespace == "" then
      return nil, string.format("%s %q: metadata.namespace is missing", kind, name)
    end
  end
  return kind, namespace, name, namespace .. "/" .. name
end

-- Dirty owners -------------------------------------------------------------------

function Store:mark_dirty(owner)
  self.dirty[owner] = true
end

-- Every owner the store holds (the node tables, each Service and policy):
-- a full reconcile, as plan does and the agent after a resync.
function Store:owners()
  local owners = { [M.NODE_OWNER] = true }
  for key in pairs(self.objects.Service) do
    owners[M.service_owner_of_key(key)] = true
  end
  for _, kind in ipairs(M.POLICY_KINDS) do
    for key in pairs(self.derived[kind]) do
      owners[M.policy_owner(kind, key:sub(2))] = true
    end
  end
  return owners
end

function Store:take_dirty()
  local dirty = self.dirty
  self.dirty = {}
  return dirty
end

local function mark_all(self)
  for owner in pairs(self:owners()) do
    self.dirty[owner] = true
  end
end

local function mark_claimants(self, kind, fkeys)
  local index = self.policies_by_frontend[kind]
  for fkey in pairs(fkeys) do
    local bucket = index[fkey]
    if bucket then
      for name in pairs(bucket.items) do
        self.dirty[M.policy_owner(kind, name)] = true
      end
    end
  end
end

-- Services ----------------------------------------------------------------------

-- Policies' frontends -------------------------------------------------------------

-- What a policy's frontend matcher claims, from its checked spec: its
-- addresses × its ports. An addressMatcher claims its ip × its toPorts; a
-- serviceMatcher its Service's ClusterIPs × the Service ports toPorts
-- selects (all of them when toPorts is empty; nothing while the store has no
-- such Service). A toPorts entry selects the Service port of the same number
-- and protocol, and of the same name when both have one; the claimed port
-- keeps the Service port's name (else the entry's), by which reconcile maps
-- it to a backend port. An invalid spec claims nothing. → { addresses =
-- { text }, ports = { { port, protocol, name } } } and the keys of the
-- product as a set (the policies_by_frontend index, whose claimants
-- reconcile decides a conflict among).
local NO_CLAIM = { addresses = NONE, ports = NONE }

local function policy_claim(self, spec)
  local claim = NO_CLAIM
  if spec and spec.frontend.mode == "address" then
    claim = { addresses = { spec.frontend.ip }, ports = spec.frontend.ports }
  elseif spec then
    local frontend = spec.frontend
    local service = self:service_spec(frontend.namespace, frontend.service_name)
    if service then
      local wanted, ports = frontend.ports, {}
      for _, port in ipairs(service.ports) do
        if #wanted == 0 then
          ports[#ports + 1] = { port = port.port, protocol = port.protocol, name = port.name }
        else
          for _, want in ipairs(wanted) do
            if want.port == port.port and want.protocol == port.protocol
                and (want.name == nil or port.name == nil or want.name == port.name) then
              ports[#ports + 1] = { port = port.port, protocol = port.protocol, name = port.name or want.name }
              break
            end
          end
        end
      end
      claim = { addresses = service.cluster_ips, ports = ports }
    end
  end
  local keys = {}
  for _, address in ipairs(claim.addresses) do
    for _, port in ipairs(claim.ports) do
      keys[M.frontend_key(address, port.port, port.protocol)] = true
    end
  end
  return claim, keys
end

local function index_policy_frontends(self, kind, name, policy, fkeys)
  local index = self.policies_by_frontend[kind]
  for fkey in pairs(fkeys) do
    bucket_add(index, fkey, name, policy)
  end
end

local function unindex_policy_frontends(self, kind, name, fkeys)
  local index = self.policies_by_frontend[kind]
  for fkey in pairs(fkeys) do
    bucket_remove(index, fkey, name)
  end
end

-- A Service that a serviceMatcher names changed: the policy's claim is
-- made again from its checked spec; the policies that claim a frontend it
-- gained or lost may see a conflict's winner change.
local function refresh_service_policies(self, service_key)
  for policy_key in pairs(self.policies_by_service[service_key] or NONE) do
    local kind, name = policy_key:match("^([^/]+)/(.*)$")
    local d = self.derived[kind]["/" .. name]
    if d then
      self.dirty[M.policy_owner(kind, name)] = true
      local claim, fkeys = policy_claim(self, d.spec)
      d.claim = claim
      local changed = {}
      for fkey in pairs(d.fkeys) do
        if not fkeys[fkey] then
          changed[fkey] = true
        end
      end
      for fkey in pairs(fkeys) do
        if not d.fkeys[fkey] then
          changed[fkey] = true
        end
      end
      if next(changed) then
        unindex_policy_frontends(self, kind, name, d.fkeys)
        index_policy_frontends(self, kind, name, self.objects[kind]["/" .. name], fkeys)
        d.fkeys = fkeys
        mark_claimants(self, kind, changed)
      end
    end
  end
end

-- Per-kind indexing: index(self, key, obj) → derived (what the object is
-- indexed under: a table, or for a slice its Service's key); unindex(self,
-- key, derived); mark(self, key, old_derived, new_derived) marks the owners
-- the change can affect.
local handlers = {}

-- Key sets: the store keys under one index key — the one key itself (nearly
-- always: a frontend, a ClusterIP, a Service's EndpointSlices), or a set of
-- keys when there are several. No table per entry for the usual case: these
-- indexes hold an entry per Service.
local function key_set_add(index, index_key, store_key)
  local keys = index[index_key]
  if keys == nil then
    index[index_key] = store_key
  elseif type(keys) == "string" then
    if keys ~= store_key then
      index[index_key] = { [keys] = true, [store_key] = true }
    end
  else
    keys[store_key] = true
  end
end

local function key_set_remove(index, index_key, store_key)
  local keys = index[index_key]
  if keys == store_key then
    index[index_key] = nil
  elseif type(keys) == "table" then
    keys[store_key] = nil
    local first = next(keys)
    if next(keys, first) == nil then -- one left
      index[index_key] = first
    end
  end
end

-- The objects (decoded) of a key set, sorted by namespace and name.
local function key_set_objects(self, keys, objects)
  local out = {}
  if type(keys) == "string" then
    out[1] = unpacked(self, objects[keys])
  elseif keys then
    for key in pairs(keys) do
      out[#out + 1] = unpacked(self, objects[key])
    end
    table.sort(out, by_namespace_name)
  end
  return out
end

-- What a Service is indexed under, as one flat array (there are 10,000 of
-- them): its ID (false for none), how many ClusterIPs it has, those, then
-- its frontend keys.
local function service_derived(id, spec)
  local d = { id or false, #spec.cluster_ips }
  for i, ip in ipairs(spec.cluster_ips) do
    d[2 + i] = ip
  end
  local first = 2 + #spec.cluster_ips
  for i, frontend in ipairs(spec.frontends) do
    d[first + i] = frontend.key
  end
  return d
end

-- where a Service's frontend keys start in its derived array
local function first_frontend_key(d)
  return 3 + d[2]
end

-- The other Services claiming one of the frontends (a conflict's winner can
-- change when a claimant comes, goes or changes).
local function mark_service_claimants(self, d, own_key)
  local index = self.services_by_frontend
  for i = first_frontend_key(d), #d do
    local claimants = index[d[i]]
    if type(claimants) == "table" then
      for key in pairs(claimants) do
        if key ~= own_key then
          self.dirty[M.service_owner_of_key(key)] = true
        end
      end
    elseif claimants ~= nil and claimants ~= own_key then
      self.dirty[M.service_owner_of_key(claimants)] = true
    end
  end
end

-- A Service is checked here (service_spec) for what the indexes need — its
-- ClusterIPs and frontend keys, kept — and its ID is settled here, so that
-- reconcile only reads it. The spec itself is made again when it is read
-- (service_spec below): kept, 10,000 of them were a fifth of the heap, and
-- a reconcile reads it once.
handlers.Service = {
  index = function(self, key, obj)
    local spec = service_spec.parse(obj, self.service_proxy_name)
    local d = service_derived(self.ids:service_id(obj), spec)
    for i = 3, first_frontend_key(d) - 1 do
      key_set_add(self.services_by_ip, d[i], key)
    end
    for i = first_frontend_key(d), #d do
      key_set_add(self.services_by_frontend, d[i], key)
    end
    return d
  end,
  unindex = function(self, key, d)
    self.service_specs[key] = nil
    for i = 3, first_frontend_key(d) - 1 do
      key_set_remove(self.services_by_ip, d[i], key)
    end
    for i = first_frontend_key(d), #d do
      key_set_remove(self.services_by_frontend, d[i], key)
    end
  end,
  release = function(self, _, obj)
    self.ids:release_service(obj)
  end,
  mark = function(self, key, old, new)
    self.dirty[M.service_owner_of_key(key)] = true
    if old then
      mark_service_claimants(self, old, key)
    end
    if new then
      mark_service_claimants(self, new, key)
    end
    refresh_service_policies(self, key)
  end,
}

-- An EndpointSlice is indexed under its Service's key "ns/name" (or false:
-- a slice no Service of this agent's reads), which is all that is kept of it
-- besides its text.
handlers.EndpointSlice = {
  index = function(self, key, obj)
    local service = field(obj, "metadata", "labels", M.SERVICE_NAME_LABEL)
    -- kube-proxy ignores the slices of Services left to another proxy by
    -- their labels, whatever the Service itself says
    if type(service) == "string" and service ~= ""
        and not service_spec.left_to_another_proxy(obj, self.service_proxy_name) then
      local service_key = field(obj, "metadata", "namespace") .. "/" .. service
      key_set_add(self.slices_by_service, service_key, key)
      return service_key
    end
    return false
  end,
  unindex = function(self, key, service_key)
    if service_key then
      key_set_remove(self.slices_by_service, service_key, key)
    end
  end,
  mark = function(self, _, old, new)
    if old then
      self.dirty[M.service_owner_of_key(old)] = true
    end
    if new then
      self.dirty[M.service_owner_of_key(new)] = true
    end
  end,
}

local function copy_labels(obj)
  local labels = {}
  local source = field(obj, "metadata", "labels")
  if type(source) == "table" then
    for key, value in pairs(source) do
      if type(key) == "string" and type(value) == "string" then
        labels[key] = value
      end
    end
  end
  return labels
end

-- One candidate of mark_pod_policies, considered once: marked when its
-- backend selector matches one of the label sets. A LocalRedirect selects
-- pods of this node only: a pod elsewhere (before and after) cannot change
-- its backends or its loop-avoidance pods.
local function mark_if_selecting(self, kind, name, label_sets, seen)
  if seen[name] then
    return
  end
  seen[name] = true
  local d = self.derived[kind]["/" .. name]
  for _, set in ipairs(label_sets) do
    if d and d.selector and set.labels and d.selector:matches(set.labels)
        and (kind ~= "LocalRedirectPolicy" or (self.node_name ~= nil and set.node == self.node_name)) then
      self.dirty[M.policy_owner(kind, name)] = true
    end
  end
end

-- Marks the policies of one kind whose backend selector matches one of the
-- label sets (a pod before and after): candidates from the selector index
-- (by one matchLabels pair, or every policy whose selector has none), then
-- the full match. (Helpers, not closures: this runs for every Pod event.)
local function mark_pod_policies(self, kind, label_sets)
  local by_pair, any = self.policies_by_selector[kind], self.policies_any_selector[kind]
  local seen = {}
  for name in pairs(any) do
    mark_if_selecting(self, kind, name, label_sets, seen)
  end
  for _, set in ipairs(label_sets) do
    for key, value in pairs(set.labels or {}) do
      for name in pairs(by_pair[key .. "=" .. value] or NONE) do
        mark_if_selecting(self, kind, name, label_sets, seen)
      end
    end
  end
end

handlers.Pod = {
  index = function(self, key, obj)
    local d = { labels = copy_labels(obj), node = field(obj, "spec", "nodeName") }
    local uid = field(obj, "metadata", "uid")
    if type(uid) == "string" and uid ~= "" then
      d.pod_uid = uid
      self.pods_by_uid[uid] = obj
    end
    if type(d.node) ~= "string" or d.node == "" then
      d.node = nil
    end
    if d.node then
      bucket_add(self.pods_by_node, d.node, key, obj)
    end
    for label, value in pairs(d.labels) do
      bucket_add(self.pods_by_label, label .. "=" .. value, key, obj)
      bucket_add(self.pods_by_label_key, label, key, obj)
    end
    return d
  end,
  unindex = function(self, key, d)
    if d.pod_uid and self.pods_by_uid[d.pod_uid] == self.objects.Pod[key] then
      self.pods_by_uid[d.pod_uid] = nil
    end
    if d.node then
      bucket_remove(self.pods_by_node, d.node, key)
    end
    for label, value in pairs(d.labels) do
      bucket_remove(self.pods_by_label, label .. "=" .. value, key)
      bucket_remove(self.pods_by_label_key, label, key)
    end
  end,
  mark = function(self, _, old, new)
    local sets = {}
    if old then
      sets[#sets + 1] = old
    end
    if new then
      sets[#sets + 1] = new
    end
    mark_pod_policies(self, "LocalRedirectPolicy", sets)
    mark_pod_policies(self, "BalancingPolicy", sets)
  end,
}

-- What of a Node reconciliation can read once it is trimmed: its uid,
-- labels, annotations and addresses, as one string. A kubelet's status
-- update changes none of them (its conditions and heartbeat times are
-- trimmed away), and must not cost a round over every owner.
local function sorted_pairs_text(t)
  local parts = {}
  for k, v in pairs(type(t) == "table" and t or {}) do
    parts[#parts + 1] = tostring(k) .. "=" .. tostring(v)
  end
  table.sort(parts)
  return table.concat(parts, "\0")
end

-- What every owner reads of this agent's Node (the node context: its uid,
-- labels and addresses), and its annotations (its ID and proxy IP: the node
-- tables' and the node-mode policies' business, as for any node).
local function node_fingerprints(obj)
  local addresses = {}
  for i, entry in ipairs(field(obj, "status", "addresses") or {}) do
    addresses[i] = tostring(type(entry) == "table" and entry.type) .. " "
      .. tostring(type(entry) == "table" and entry.address)
  end
  return table.concat({ tostring(field(obj, "metadata", "uid")), sorted_pairs_text(field(obj, "metadata", "labels")),
    table.concat(addresses, "\0") }, "\1"), sorted_pairs_text(field(obj, "metadata", "annotations"))
end

handlers.Node = {
  index = function(_, _, obj)
    local context, annotations = node_fingerprints(obj)
    return { context = context, annotations = annotations }
  end,
  unindex = function() end,
  mark = function(self, key, old, new)
    local context_changed = not (old and new and old.context == new.context)
    if not context_changed and old.annotations == new.annotations then
      return -- nothing reconciliation reads has changed
    end
    self.dirty[M.NODE_OWNER] = true
    if self.node_name ~= nil and key:sub(2) == self.node_name and context_changed then
      mark_all(self)
    else
      -- hostPort and nodeProxy backends are addresses of the pods' nodes.
      for name in pairs(self.node_mode_policies) do
        self.dirty[M.policy_owner("BalancingPolicy", name)] = true
      end
    end
  end,
}

local function policy_handler(kind)
  return {
    index = function(self, key, obj)
      local name = key:sub(2)
      -- read once, here; an invalid spec is kept as its reason and indexed
      -- under nothing (it programs nothing, so nothing else can change that)
      local spec, invalid = policy_spec.parse(kind, obj)
      local d = { spec = spec, invalid = invalid }
      d.claim, d.fkeys = policy_claim(self, spec)
      index_policy_frontends(self, kind, name, obj, d.fkeys)
      if spec and spec.frontend.mode == "service" then
        d.service = spec.frontend.namespace .. "/" .. spec.frontend.service_name
        self.policies_by_service[d.service] = self.policies_by_service[d.service] or {}
        self.policies_by_service[d.service][kind .. "/" .. name] = true
      end
      -- (an addressEndpoint backend has no selector: pods never change it)
      local backend = spec and spec.backend
      d.selector = backend and backend.selector
      if d.selector then
        local first
        for label in pairs(d.selector.match_labels) do
          if first == nil or label < first then
            first = label
          end
        end
        if first then
          d.selector_pair = first .. "=" .. d.selector.match_labels[first]
          local index = self.policies_by_selector[kind]
          index[d.selector_pair] = index[d.selector_pair] or {}
          index[d.selector_pair][name] = true
        else
          self.policies_any_selector[kind][name] = true
        end
      end
      if kind == "BalancingPolicy" and backend and (backend.mode == "hostPort" or backend.mode == "nodeProxy") then
        d.node_mode = true
        self.node_mode_policies[name] = true
      end
      local sid = field(obj, "metadata", "annotations", ids.ANNOTATION)
      if sid ~= nil then
        d.sid = tostring(sid)
        self.policies_by_id[d.sid] = self.policies_by_id[d.sid] or {}
        self.policies_by_id[d.sid][kind .. "/" .. name] = true
      end
      -- its ID is settled here too, so that reconcile only reads it
      local _, displaced = self.ids:register_policy(obj)
      d.displaced = displaced
      return d
    end,
    unindex = function(self, key, d)
      local name = key:sub(2)
      unindex_policy_frontends(self, kind, name, d.fkeys)
      local set = d.service and self.policies_by_service[d.service]
      if set then
        set[kind .. "/" .. name] = nil
        if next(set) == nil then
          self.policies_by_service[d.service] = nil
        end
      end
      if d.selector_pair then
        local index = self.policies_by_selector[kind]
        index[d.selector_pair][name] = nil
        if next(index[d.selector_pair]) == nil then
          index[d.selector_pair] = nil
        end
      else
        self.policies_any_selector[kind][name] = nil
      end
      if d.node_mode then
        self.node_mode_policies[name] = nil
      end
      if d.sid then
        local holders = self.policies_by_id[d.sid]
        holders[kind .. "/" .. name] = nil
        if next(holders) == nil then
          self.policies_by_id[d.sid] = nil
        end
      end
    end,
    release = function(self, _, obj)
      self.ids:release_policy(obj)
    end,
    mark = function(self, key, old, new)
      self.dirty[M.policy_owner(kind, key:sub(2))] = true
      -- Conflicts: the other claimants of a frontend it claims or claimed.
      for _, version in ipairs({ old or false, new or false }) do
        if version then
          mark_claimants(self, kind, version.fkeys)
          -- The policies (of either kind) sharing its serviceId annotation:
          -- which of them holds the ID can change.
          -- A policy that gains or loses its ID starts or stops programming
          -- its frontends, so its own claimants are affected too.
          for holder in pairs(version.sid and self.policies_by_id[version.sid] or NONE) do
            local holder_kind, holder_name = holder:match("^([^/]+)/(.*)$")
            self.dirty[M.policy_owner(holder_kind, holder_name)] = true
            local holder_d = self.derived[holder_kind]["/" .. holder_name]
            if holder_d then
              mark_claimants(self, holder_kind, holder_d.fkeys)
            end
          end
        end
      end
      -- The policy whose provisional ID its annotation took was given
      -- another ID when this version was registered.
      if new and new.displaced then
        self.dirty[M.policy_owner(new.displaced.kind, new.displaced.name)] = true
      end
    end,
  }
end

handlers.LocalRedirectPolicy = policy_handler("LocalRedirectPolicy")
handlers.BalancingPolicy = policy_handler("BalancingPolicy")

-- Events --------------------------------------------------------------------------

-- Whether held (what the store would keep of obj) is the version the store
-- holds (old_obj): the same text, or the same uid and resourceVersion. The
-- very table the store holds is not: a caller may have changed it in place.
local function same_version(self, old_obj, obj, held)
  if type(held) == "string" then
    return held == held_text(self, old_obj) -- (a relist's version encodes as it did)
  end
  if old_obj == obj or type(old_obj) ~= "table" then
    return false
  end
  local rv = field(obj, "metadata", "resourceVersion")
  return rv ~= nil and rv ~= "" and rv == field(old_obj, "metadata", "resourceVersion")
    and field(obj, "metadata", "uid") == field(old_obj, "metadata", "uid")
end

-- upsert(obj) → true | nil, err. A MODIFIED for an unknown object adds it.
function Store:upsert(obj)
  local kind, namespace, _, key = identity(obj)
  if not kind then
    return nil, namespace
  end
  local objects, derived, handler = self.objects[kind], self.derived[kind], handlers[kind]
  local old_obj, old = objects[key], derived[key]
  -- what the store keeps: the text of a PACKED kind (the table itself when
  -- it cannot be text)
  local held = PACKED[kind] and packed.pack(obj) or obj
  if old_obj and same_version(self, old_obj, obj, held) then
    -- a relist: nothing can change, and what the indexes and the sorted
    -- list hold stays what they hold
    return true
  end
  if old then
    -- (A new UID under the same name is another object; ids notices that
    -- itself and gives a Service a fresh ID.)
    handler.unindex(self, key, old)
  else
    self.counts[kind] = self.counts[kind] + 1
  end
  -- the sorted list holds the object's table: a new version replaces it
  self.sorted[kind] = nil
  if old_obj then
    release_held(self, old_obj)
  end
  if self.texts and type(held) == "string" then
    held = self.texts:put(held)
  end
  objects[key] = held
  local new = handler.index(self, key, obj)
  derived[key] = new
  handler.mark(self, key, old, new)
  return true
end

-- delete(obj) → true | nil, err. Deleting an unknown object is harmless.
function Store:delete(obj)
  local kind, err, _, key = identity(obj)
  if not kind then
    return nil, err
  end
  local objects, derived, handler = self.objects[kind], self.derived[kind], handlers[kind]
  local old_obj, old = objects[key], derived[key]
  if not old_obj then
    return true
  end
  handler.unindex(self, key, old)
  objects[key], derived[key] = nil, nil
  self.counts[kind] = self.counts[kind] - 1
  self.sorted[kind] = nil
  if handler.release then
    handler.release(self, key, unpacked(self, old_obj))
  end
  release_held(self, old_obj)
  handler.mark(self, key, old, nil)
  return true
end

-- resync(kind, objects) → { upserted, deleted, refused = { {object, err} } }:
-- the store's objects of one kind made equal to a complete list of them (a
-- relist after 410 Gone or an expired continue token, a manifest directory
-- read again): every listed object is upserted (one seen before with the
-- same uid and resourceVersion, or as it is, marks nothing), and every
-- object of the kind the list lacks is deleted — what was deleted while no
-- watch was open is deleted here. An object without a name (or namespace,
-- or of another kind) is reported in refused and changes nothing; an object
-- that is the very table the store holds is taken as unchanged (a source
-- that kept it).
--
-- A list that comes in pages is the same in two steps, so that no page is
-- kept once it is read: resync_page(kind, objects, listed) for each page
-- (listed: a table the caller keeps for the list), then resync_finish(kind,
-- listed) after the last.
function Store:resync(kind, objects)
  local listed = {}
  local result = self:resync_page(kind, objects, listed)
  result.deleted = self:resync_finish(kind, listed)
  return result
end

-- resync_page(kind, objects, listed) → { upserted, refused = { {object, err} } }
function Store:resync_page(kind, objects, listed)
  local result = { upserted = 0, refused = {} }
  if not KNOWN[kind] then
    result.refused[1] = { object = nil, err = string.format("kind %q is not one of %s", tostring(kind),
      table.concat(M.KINDS, ", ")) }
    return result
  end
  for _, obj in ipairs(objects) do
    local obj_kind, namespace_or_err, _, key = identity(obj)
    if not obj_kind then
      result.refused[#result.refused + 1] = { object = obj, err = namespace_or_err }
    elseif obj_kind ~= kind then
      result.refused[#result.refused + 1] = { object = obj,
        err = string.format("kind %q in a list of %s", obj_kind, kind) }
    elseif self.objects[kind][key] == obj then
      listed[key] = true -- the very table the store holds: a source that kept it (unchanged)
    else
      listed[key] = true
      local ok, err = self:upsert(obj)
      if ok then
        result.upserted = result.upserted + 1
      else
        result.refused[#result.refused + 1] = { object = obj, err = err }
      end
    end
  end
  return result
end

-- resync_finish(kind, listed) → how many objects of the kind were deleted:
-- those no page of the list had.
function Store:resync_finish(kind, listed)
  if not KNOWN[kind] then
    return 0
  end
  local gone = {}
  for key, held in pairs(self.objects[kind]) do
    if not listed[key] then
      gone[#gone + 1] = unpacked(self, held)
    end
  end
  for _, obj in ipairs(gone) do
    self:delete(obj)
  end
  return #gone
end

-- ingest{ type = "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK", object = obj } → true | nil, err:
-- one watch event into the cache and indexes (writing entries to the kernel
-- is apply, the C step; the store only ingests).
function Store:ingest(event)
  if type(event) ~= "table" then
    return nil, "event: not a table"
  end
  local event_type = present(event.type)
  if event_type == "ADDED" or event_type == "MODIFIED" then
    return self:upsert(event.object)
  elseif event_type == "DELETED" then
    return self:delete(event.object)
  elseif event_type == "BOOKMARK" then
    return true
  end
  return nil, string.format("event: type %q is not ADDED, MODIFIED or DELETED", tostring(event_type))
end

-- Reads ------------------------------------------------------------------------------

function Store:get(kind, namespace, name)
  local objects = self.objects[kind]
  if not objects or name == nil then
    return nil
  end
  if M.CLUSTER_SCOPED[kind] then
    namespace = ""
  end
  return unpacked(self, objects[(namespace or "") .. "/" .. name])
end

-- list(kind) → array sorted by namespace, then name.
function Store:list(kind)
  local objects = self.objects[kind]
  if not objects then
    return {}
  end
  local sorted = self.sorted[kind]
  if not sorted then
    sorted = sorted_values(self, objects)
    if PACKED[kind] then
      return sorted -- decoded afresh: kept, they would be the memory the text saves
    end
    self.sorted[kind] = sorted
  end
  local out = {}
  for i = 1, #sorted do
    out[i] = sorted[i]
  end
  return out
end

-- Objects of kind held, or of every kind without one.
function Store:count(kind)
  if kind then
    return self.counts[kind] or 0
  end
  local total = 0
  for _, n in pairs(self.counts) do
    total = total + n
  end
  return total
end

function Store:node(name)
  return self.objects.Node["/" .. tostring(name)]
end

-- endpoint_slices_of(namespace, service_name) → array sorted by name.
function Store:endpoint_slices_of(namespace, service_name)
  return key_set_objects(self, self.slices_by_service[namespace .. "/" .. service_name], self.objects.EndpointSlice)
end

-- service_spec(namespace, name) → the checked Service (balancing.service_spec)
-- and its service ID, or nil when the store has no such Service.
function Store:service_spec(namespace, name)
  local key = namespace .. "/" .. name
  local d = self.derived.Service[key]
  if not d then
    return nil
  end
  local spec = self.service_specs[key]
  if not spec then
    spec = service_spec.parse(unpacked(self, self.objects.Service[key]), self.service_proxy_name)
    self.service_specs[key] = spec
  end
  return spec, d[1] or nil
end

-- The Service that wins a frontend key against the Service namespace/name:
-- the oldest other claimant older than it (creationTimestamp, then
-- namespace/name), or nil when it keeps the frontend.
function Store:older_service_claiming(frontend_key, namespace, name)
  local claimants = self.services_by_frontend[frontend_key]
  if type(claimants) ~= "table" then
    return nil -- the Service alone
  end
  local services = self.objects.Service
  local own_key = namespace .. "/" .. name
  local winner = unpacked(self, services[own_key])
  local found = false
  for key in pairs(claimants) do
    local service = key ~= own_key and unpacked(self, services[key])
    if service and object.older(service, winner) then
      winner, found = service, true
    end
  end
  return found and winner or nil
end

function Store:services_by_cluster_ip(ip)
  return key_set_objects(self, self.services_by_ip[ip], self.objects.Service)
end

-- pod_by_uid(uid) → the Pod with that metadata.uid, or nil.
function Store:pod_by_uid(uid)
  return self.pods_by_uid[uid]
end

function Store:pods_on_node(node_name)
  local bucket = self.pods_by_node[node_name]
  return sorted_values(self, bucket and bucket.items)
end

-- pods_matching(compiled_selector) → array sorted by namespace, then name.
-- Candidates come from the smallest label bucket the selector allows
-- (a matchLabels pair, the values of an In, the key of an Exists); only a
-- selector made of NotIn / DoesNotExist alone looks at every pod.
function Store:pods_matching(compiled)
  local candidates, size
  local function offer(items, n)
    if size == nil or n < size then
      candidates, size = items, n
    end
  end
  for key, value in pairs(compiled.match_labels or {}) do
    local bucket = self.pods_by_label[key .. "=" .. value]
    offer(bucket and bucket.items or {}, bucket and bucket.n or 0)
  end
  for _, expr in ipairs(compiled.expressions or {}) do
    if expr.operator == "Exists" then
      local bucket = self.pods_by_label_key[expr.key]
      offer(bucket and bucket.items or {}, bucket and bucket.n or 0)
    elseif expr.operator == "In" then
      local union, n = {}, 0
      for value in pairs(expr.values) do
        local bucket = self.pods_by_label[expr.key .. "=" .. value]
        if bucket then
          for key, pod in pairs(bucket.items) do
            union[key] = pod
          end
          n = n + bucket.n
        end
      end
      offer(union, n)
    end
  end
  if candidates == nil then
    candidates = self.objects.Pod
  end
  local out = {}
  for _, pod in pairs(candidates) do
    if compiled:matches(field(pod, "metadata", "labels")) then
      out[#out + 1] = pod
    end
  end
  table.sort(out, by_namespace_name)
  return out
end

-- policies_claiming(kind, frontend_key) → array of policies, oldest first
-- (creationTimestamp, then name: the order in which conflicts are won).
function Store:policies_claiming(kind, frontend_key)
  local index = self.policies_by_frontend[kind]
  local bucket = index and index[frontend_key]
  return sorted_values(self, bucket and bucket.items, ids.older)
end

-- The frontend keys the store indexes a policy under (see policies_claiming).
function Store:policy_frontend_keys(kind, name)
  local d = self.derived[kind] and self.derived[kind]["/" .. name]
  local out = {}
  for fkey in pairs(d and d.fkeys or {}) do
    out[#out + 1] = fkey
  end
  table.sort(out)
  return out
end

local function policy_derived(self, kind, name)
  local derived = self.derived[kind]
  return derived and derived["/" .. name]
end

-- policy_spec(kind, name) → the policy's checked spec (balancing.policy_spec),
-- or nil, reason naming the field when the spec is invalid; nil when the
-- store has no such policy.
function Store:policy_spec(kind, name)
  local d = policy_derived(self, kind, name)
  if not d then
    return nil
  end
  return d.spec, d.invalid
end

-- policy_claim(kind, name) → what the policy's frontend matcher claims now
-- (see policy_claim above): { addresses = { text }, ports = { { port,
-- protocol, name } } }, the store's own (not to be changed); nothing for an
-- invalid or unknown policy.
function Store:policy_claim(kind, name)
  local d = policy_derived(self, kind, name)
  return d and d.claim or NO_CLAIM
end

-- policy_id(kind, name) → id, provisional | nil, reason: the ID settled when
-- the policy entered the store (ids.register_policy). Read only: it never
-- gives or moves an ID.
function Store:policy_id(kind, name)
  local policy = self:get(kind, "", name)
  if not policy then
    return nil, string.format("%s %s: not in the store", kind, name)
  end
  return self.ids:policy_id(policy)
end

M.Store = Store

return M
