-- One kind's stream from the API server into the store: the pages of a LIST,
-- then the lines of a WATCH, as the C client receives them (raw JSON, decoded
-- here once with lua-cjson, trimmed, ingested).
--
--   local src = source.new(store, "Service")
--   local page = src:list_page(body)   -- { continue = token | nil, synced = bool } | nil, err
--   local what = src:watch_line(line)  -- "event" | "bookmark" | "relist" | "error" | "skipped"
--   src.resource_version               -- where the next WATCH starts (or resumes)
--
-- Each page's items go into the store as the page comes (store:resync_page:
-- a page is garbage once read, and a large cluster's list is many times the
-- store's size as tables). A LIST is complete when a page has no continue
-- token: only then are the objects it did not have deleted
-- (store:resync_finish), so that an object deleted while no watch was open
-- is deleted, and a list cut short (an expired continue token: the client
-- starts the LIST again) deletes nothing. The items of a LIST carry no kind
-- (the API server leaves it to the list's own kind): it is set here.
--
-- Bad input never loses other state: a malformed line or page, an object the
-- store refuses, is one log line naming the kind (and the object when it has
-- a name), and the stream goes on. A watch ERROR with 410 Gone (the resource
-- version is older than the server's history) asks the client to list again.
local cjson = require("cjson")
local log = require("balancing.log")
local object = require("balancing.object")
local trim = require("balancing.trim")

local M = {}

local Source = {}
Source.__index = Source

local present, field = object.present, object.field

-- A JSON text shown in a log line: short, for a malformed line can be huge.
local function excerpt(text)
  text = tostring(text)
  if #text > 200 then
    return text:sub(1, 200) .. "…"
  end
  return text
end

local function describe(obj)
  local name = field(obj, "metadata", "name")
  local namespace = field(obj, "metadata", "namespace")
  if type(name) ~= "string" then
    return "(no metadata.name)"
  end
  if type(namespace) == "string" and namespace ~= "" then
    return namespace .. "/" .. name
  end
  return name
end

function M.new(store, kind)
  return setmetatable({ store = store, kind = kind, resource_version = nil, listed = nil, synced = false,
    listed_upserts = 0 }, Source)
end

-- list_page(body) → { continue, synced } (and upserted, deleted on the last
-- page: the whole list's) | nil, err. An error (not JSON, not a List)
-- leaves the store and the list so far as they were.
function Source:list_page(body)
  local ok, list = pcall(cjson.decode, body)
  local items = ok and type(list) == "table" and present(list.items)
  -- (an empty list may come with "items": null)
  if not ok or type(list) ~= "table" or (items ~= nil and type(items) ~= "table") then
    local err = string.format("%s list: not a List: %s", self.kind, ok and excerpt(body) or tostring(list))
    log.warn("list page refused", { kind = self.kind, error = err })
    return nil, err
  end
  if not self.listed then
    self.listed, self.listed_upserts = {}, 0
  end
  local objects = {}
  for _, item in ipairs(items or {}) do
    if type(item) == "table" then
      item.kind = self.kind
      objects[#objects + 1] = trim.object(item)
    end
  end
  local result = self.store:resync_page(self.kind, objects, self.listed)
  for _, refused in ipairs(result.refused) do
    log.warn("object refused", { kind = self.kind, name = describe(refused.object), error = tostring(refused.err) })
  end
  self.listed_upserts = self.listed_upserts + result.upserted
  local continue = field(list, "metadata", "continue")
  if type(continue) == "string" and continue ~= "" then
    return { continue = continue, synced = false }
  end
  -- the last page: the list is complete
  local upserted, deleted = self.listed_upserts, self.store:resync_finish(self.kind, self.listed)
  self.listed = nil
  self.synced = true
  local version = field(list, "metadata", "resourceVersion")
  if type(version) == "string" and version ~= "" then
    self.resource_version = version
  end
  return { synced = true, upserted = upserted, deleted = deleted }
end

-- A LIST started again (an expired continue token, a new connection): what
-- the pages so far listed is forgotten (their objects stay until a complete
-- list lacks them).
function Source:restart_list()
  self.listed = nil
end

local function status_code(obj)
  return tonumber(field(obj, "code"))
end

-- watch_line(line) → "event" (ingested), "bookmark", "relist" (410 Gone:
-- list again from scratch), "error" (another ERROR event, logged: the
-- watch failed) or "skipped" (logged: nothing changed).
function Source:watch_line(line)
  local ok, event = pcall(cjson.decode, line)
  if not ok or type(event) ~= "table" then
    log.warn("watch event refused", { kind = self.kind, error = "not JSON: " .. excerpt(line) })
    return "skipped"
  end
  local event_type, obj = present(event.type), present(event.object)
  if event_type == "ERROR" then
    if status_code(obj) == 410 then
      return "relist"
    end
    -- the server ends the watch after it: started again after a backoff
    log.warn("watch error", { kind = self.kind, code = status_code(obj), error = tostring(field(obj, "message")) })
    return "error"
  end
  if type(obj) ~= "table" then
    log.warn("watch event refused", { kind = self.kind, type = tostring(event_type), error = "no object" })
    return "skipped"
  end
  local version = field(obj, "metadata", "resourceVersion")
  if event_type == "BOOKMARK" then
    if type(version) == "string" and version ~= "" then
      self.resource_version = version
    end
    return "bookmark"
  end
  obj.kind = obj.kind or self.kind
  local done, err = self.store:ingest({ type = event_type, object = trim.object(obj) })
  if not done then
    log.warn("watch event refused", { kind = self.kind, name = describe(obj), error = tostring(err) })
    return "skipped"
  end
  if type(version) == "string" and version ~= "" then
    self.resource_version = version
  end
  return "event"
end

M.Source = Source

return M
