-- Service IDs: the number every frontend carries in its map value and every
-- event reports, mapped back to its object by lookup().
--
-- Two ranges that never meet:
--   1..0x7FFFFFFF            policies: the balancing.elf.io/serviceId annotation
--                            (or, until an agent writes one, a provisional ID);
--   0x80000000..0xFFFFFFFF   Services: the agent's own, derived from a hash of
--                            the UID (namespace/name when there is none),
--                            probed past collisions, kept for the Service's life.
--
-- The registry keeps its own tables: Services by namespace/name (with the UID
-- they were given their ID for, so a Service deleted and created again under
-- the same name while no DELETED was seen gets a fresh ID), policies by kind and
-- name. IDs are settled when objects enter the store, which calls service_id
-- / release_service and register_policy / release_policy on every event;
-- reconcile only reads them (policy_id, lookup), so they never depend on the
-- order in which owners are reconciled.
local bit = require("bit")
local object = require("balancing.object")

local M = {}

local Registry = {}
Registry.__index = Registry

M.SERVICE_ID_MIN = 0x80000000
M.SERVICE_ID_MAX = 0xFFFFFFFF
M.POLICY_ID_MIN = 1
M.POLICY_ID_MAX = 0x7FFFFFFF
M.ANNOTATION = "balancing.elf.io/serviceId"

local present, metadata = object.present, object.metadata

-- FNV-1a, 32 bits. The multiply by 16777619 (2^24 + 403) is split so that
-- no intermediate exceeds the 2^53 a double holds exactly.
function M.hash(text)
  local h = 2166136261
  for i = 1, #text do
    h = bit.bxor(h, text:byte(i)) % 0x100000000
    h = (bit.lshift(h, 24) % 0x100000000 + h * 403) % 0x100000000
  end
  return h
end

-- older(a, b): which of two policies claiming one ID or frontend wins
-- (object.older).
M.older = object.older

function M.new()
  return setmetatable({
    -- (three flat maps rather than a record per Service: there are 10,000)
    services = {},          -- "ns/name" -> id
    service_uids = {},      -- "ns/name" -> the uid that id was given to (when it had one)
    service_by_id = {},     -- id -> "ns/name"
    policies = {},          -- "Kind/name" -> { kind, name, object, id | nil, invalid | nil, provisional | nil }
    claims = {},            -- annotated id -> { ["Kind/name"] = record }
    provisional_by_id = {}, -- provisional id -> record
    changes = 0,            -- counts the calls that may have changed an ID (the agent's state file)
  }, Registry)
end

-- Services ------------------------------------------------------------------

local function service_identity(service)
  local meta = metadata(service)
  local namespace, name = present(meta.namespace), present(meta.name)
  if type(name) ~= "string" or type(namespace) ~= "string" then
    return nil, "Service: metadata.namespace and metadata.name are needed for a service ID"
  end
  local uid = present(meta.uid)
  return namespace .. "/" .. name, namespace, name, uid and tostring(uid) or nil
end

-- service_id(service) → id (or nil, err for an object without namespace/name).
function Registry:service_id(service)
  local key, namespace, _, uid = service_identity(service)
  if not key then
    return nil, namespace
  end
  local given, given_uid = self.services[key], self.service_uids[key]
  if given and (uid == nil or given_uid == nil or given_uid == uid) then
    self.service_uids[key] = given_uid or uid
    return given
  end
  if given then -- the same name, another UID: a new Service
    self.service_by_id[given] = nil
  end
  local span = M.SERVICE_ID_MAX - M.SERVICE_ID_MIN + 1
  local id = M.SERVICE_ID_MIN + M.hash(uid or key) % span
  local tries = 0
  while self.service_by_id[id] do
    tries = tries + 1
    if tries >= span then
      return nil, "Service " .. key .. ": no free service ID"
    end
    id = id + 1
    if id > M.SERVICE_ID_MAX then
      id = M.SERVICE_ID_MIN
    end
  end
  self.services[key], self.service_uids[key], self.service_by_id[id] = id, uid, key
  self.changes = self.changes + 1
  return id
end

-- release_service(service): its ID becomes free (only if it is still the
-- one given to that UID).
function Registry:release_service(service)
  local key, _, _, uid = service_identity(service)
  local id = key and self.services[key]
  local given_uid = id and self.service_uids[key]
  if not id or (uid and given_uid and given_uid ~= uid) then
    return
  end
  self.services[key], self.service_uids[key], self.service_by_id[id] = nil, nil, nil
  self.changes = self.changes + 1
end

-- Policies ------------------------------------------------------------------

-- parse_annotation(text) → id, or nil, reason.
function M.parse_policy_id(text)
  if type(text) == "number" then
    text = string.format("%.0f", text)
  end
  if type(text) ~= "string" or not text:match("^%d+$") or #text > 10 then
    return nil, string.format("%q is not a decimal uint32", tostring(text))
  end
  local id = tonumber(text)
  if id == 0 then
    return nil, string.format("%q is zero", text)
  end
  if id > 0xFFFFFFFF then
    return nil, string.format("%q is not a decimal uint32", text)
  end
  if id > M.POLICY_ID_MAX then
    return nil, string.format("%q is in the range of Service IDs (must be below 2147483648)", text)
  end
  return id
end

local function policy_key(policy)
  local kind, name = present(policy.kind), present(metadata(policy).name)
  if type(kind) ~= "string" or type(name) ~= "string" then
    return nil
  end
  return kind .. "/" .. name, kind, name
end

local function drop_claim(self, record)
  if record.id then
    local claimants = self.claims[record.id]
    if claimants then
      claimants[record.key] = nil
      if next(claimants) == nil then
        self.claims[record.id] = nil
      end
    end
  end
end

local function drop_provisional(self, record)
  if record.provisional then
    if self.provisional_by_id[record.provisional] == record then
      self.provisional_by_id[record.provisional] = nil
    end
    record.provisional = nil
  end
end

-- Gives a policy without an annotation its provisional ID: derived from kind
-- and name, probed past annotated and other provisional IDs (an annotated ID
-- always wins over a provisional one, which is only a stand-in until an agent
-- writes the annotation). Without a free ID the record keeps none.
local function settle_provisional(self, record)
  local span = M.POLICY_ID_MAX - M.POLICY_ID_MIN + 1
  local id = M.POLICY_ID_MIN + M.hash(record.key) % span
  local tries = 0
  while self.claims[id] or self.provisional_by_id[id] do
    tries = tries + 1
    if tries >= span then
      return
    end
    id = id + 1
    if id > M.POLICY_ID_MAX then
      id = M.POLICY_ID_MIN
    end
  end
  record.provisional = id
  self.provisional_by_id[id] = record
end

-- free_policy_id(kind, name) → an ID no policy claims or holds
-- provisionally, derived from kind and name (probed past the taken ones), for
-- an agent to write into a policy whose annotation is invalid or lost to an
-- older policy; nil when none is free. Reads only.
function Registry:free_policy_id(kind, name)
  local span = M.POLICY_ID_MAX - M.POLICY_ID_MIN + 1
  local id = M.POLICY_ID_MIN + M.hash(kind .. "/" .. name) % span
  for _ = 1, span do
    if not self.claims[id] and not self.provisional_by_id[id] then
      return id
    end
    id = id + 1
    if id > M.POLICY_ID_MAX then
      id = M.POLICY_ID_MIN
    end
  end
  return nil
end

-- register_policy(policy) → true, displaced | nil, err: records (the latest
-- version of) a policy and settles its ID, so that reading it changes
-- nothing: the ID its annotation claims, or without one a provisional ID,
-- kept while nothing claims it. A policy whose annotation claims another's
-- provisional ID takes it, and that other policy is settled again on another
-- ID; displaced = { kind, name } names it (its ID changed: the store marks
-- it). The store calls this on every event of a policy.
function Registry:register_policy(policy)
  local key, kind, name = policy_key(type(policy) == "table" and policy or {})
  if not key then
    return nil, "policy: kind and metadata.name are needed for a policy ID"
  end
  self.changes = self.changes + 1
  local record = self.policies[key]
  if not record then
    record = { key = key, kind = kind, name = name }
    self.policies[key] = record
  end
  drop_claim(self, record)
  record.object, record.id, record.invalid = policy, nil, nil
  local text = object.field(policy, "metadata", "annotations", M.ANNOTATION)
  if text == nil then
    if not record.provisional then
      settle_provisional(self, record)
    end
    return true
  end
  drop_provisional(self, record)
  local id, reason = M.parse_policy_id(text)
  if not id then
    record.invalid = "annotation " .. M.ANNOTATION .. ": " .. reason
    return true
  end
  record.id = id
  self.claims[id] = self.claims[id] or {}
  self.claims[id][key] = record
  local displaced = self.provisional_by_id[id]
  if not displaced then
    return true
  end
  drop_provisional(self, displaced)
  settle_provisional(self, displaced)
  return true, { kind = displaced.kind, name = displaced.name }
end

function Registry:release_policy(policy)
  local key = policy_key(type(policy) == "table" and policy or {})
  local record = key and self.policies[key]
  if not record then
    return
  end
  self.changes = self.changes + 1
  drop_claim(self, record)
  drop_provisional(self, record)
  self.policies[key] = nil
end

-- The policy that holds an annotated ID: the oldest of those claiming it.
local function holder(self, id)
  local best
  for _, record in pairs(self.claims[id] or {}) do
    if not best or M.older(record.object, best.object) then
      best = record
    end
  end
  return best
end

-- policy_id(policy) → id, provisional | nil, err: the ID register_policy
-- settled for the policy (of this kind and name). Read only, so reconcile
-- may ask in any order and as often as it likes.
function Registry:policy_id(policy)
  local key, kind, name = policy_key(type(policy) == "table" and policy or {})
  if not key then
    return nil, "policy: kind and metadata.name are needed for a policy ID"
  end
  local record = self.policies[key]
  if not record then
    return nil, string.format("%s %q: not registered (no policy ID yet)", kind, name)
  end
  if record.invalid then
    return nil, record.invalid
  end
  if record.id then
    local winner = holder(self, record.id)
    if winner ~= record then
      return nil, string.format("annotation %s: %d is already used by %s %q, an older policy",
        M.ANNOTATION, record.id, winner.kind, winner.name)
    end
    return record.id, false
  end
  if not record.provisional then
    return nil, "no free provisional policy ID"
  end
  return record.provisional, true
end

-- lookup(id) → { kind, namespace, name } or nil.
function Registry:lookup(id)
  id = tonumber(id)
  if not id then
    return nil
  end
  if id >= M.SERVICE_ID_MIN then
    local key = self.service_by_id[id]
    local namespace, name = (key or ""):match("^([^/]*)/(.*)$")
    return key and { kind = "Service", namespace = namespace, name = name } or nil
  end
  local record = holder(self, id) or self.provisional_by_id[id]
  return record and { kind = record.kind, namespace = "", name = record.name } or nil
end

-- owner_name(id) → "namespace/name" for a Service, the name for a policy,
-- "" for an ID no object holds (as events and /metrics show owners).
function Registry:owner_name(id)
  local found = self:lookup(id)
  if not found then
    return ""
  end
  if found.kind == "Service" then
    return found.namespace .. "/" .. found.name
  end
  return found.name
end

-- each_holder(fn): fn(id, kind, namespace, name) for every ID an object
-- holds (Services, then policies, each in no set order; a policy's
-- provisional ID too, as lookup() answers it).
function Registry:each_holder(fn)
  for id, key in pairs(self.service_by_id) do
    local namespace, name = key:match("^([^/]*)/(.*)$")
    fn(id, "Service", namespace, name)
  end
  for _, record in pairs(self.policies) do
    local id = record.object and self:policy_id(record.object)
    if id then
      fn(id, record.kind, "", record.name)
    end
  end
end

M.Registry = Registry

return M
