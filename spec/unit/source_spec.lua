-- One kind's stream from the API server into the store (issue 7, "The loop
-- and the sources"): LIST pages, then WATCH lines; decoded once, trimmed,
-- ingested; a complete list replaces the kind's objects; 410 asks for a
-- relist; bad input is one log line and nothing else changes.
local cjson = require("cjson")
local source = require("balancing.source")
local Store = require("balancing.store")
local log = require("balancing.log")

local function service_item(name, ip, rv)
  -- as in a LIST: no kind on the item
  return { metadata = { namespace = "default", name = name, uid = "uid-" .. name, resourceVersion = rv or "1",
    managedFields = { { manager = "kubectl" } } },
    spec = { clusterIP = ip, clusterIPs = { ip }, ports = { { port = 80 } } } }
end

local function page(items, continue, rv)
  return cjson.encode({ kind = "ServiceList", apiVersion = "v1",
    metadata = { resourceVersion = rv or "100", continue = continue }, items = items })
end

local function watch(event_type, obj)
  return cjson.encode({ type = event_type, object = obj })
end

local function names(store)
  local out = {}
  for i, obj in ipairs(store:list("Service")) do
    out[i] = obj.metadata.name
  end
  return out
end

-- Runs fn with the log captured; returns the decoded lines.
local function logged(fn)
  local lines = {}
  log.set_sink(function(line) lines[#lines + 1] = cjson.decode(line) end)
  local ok, err = pcall(fn)
  log.set_sink(nil)
  assert(ok, err)
  return lines
end

describe("source", function()
  local store, src
  before_each(function()
    store = Store.new{ node_name = "node-1" }
    src = source.new(store, "Service")
  end)

  it("takes a LIST's pages and makes the store's objects of the kind equal to the complete list", function()
    assert(store:upsert({ kind = "Service", metadata = { namespace = "default", name = "deleted-meanwhile" },
      spec = { clusterIP = "10.96.0.9" } }))
    assert.same({ continue = "c1", synced = false }, src:list_page(page({ service_item("a", "10.96.0.1") }, "c1")))
    -- a page's objects come in at once; nothing is deleted before the last page
    assert.same({ "a", "deleted-meanwhile" }, names(store))
    local result = src:list_page(page({ service_item("b", "10.96.0.2") }, nil, "120"))
    assert.is_true(result.synced)
    assert.same({ "a", "b" }, names(store))
    assert.equals("120", src.resource_version)
    assert.is_true(src.synced)
  end)

  it("sets the list's kind on its items, and trims them", function()
    src:list_page(page({ service_item("a", "10.96.0.1") }))
    local obj = store:get("Service", "default", "a")
    assert.equals("Service", obj.kind)
    assert.is_nil(obj.metadata.managedFields)
  end)

  it("drops the pages of a list started again (an expired continue token)", function()
    src:list_page(page({ service_item("stale", "10.96.0.1") }, "c1"))
    src:restart_list()
    src:list_page(page({ service_item("fresh", "10.96.0.2") }))
    assert.same({ "fresh" }, names(store))
  end)

  it("deletes nothing when a list is cut short and started again, until the new list is complete", function()
    src:list_page(page({ service_item("a", "10.96.0.1"), service_item("b", "10.96.0.2") }))
    src:list_page(page({ service_item("a", "10.96.0.1") }, "c1"))
    src:restart_list()
    assert.same({ "a", "b" }, names(store))
    local result = src:list_page(page({ service_item("b", "10.96.0.2") }))
    assert.same({ "b" }, names(store))
    assert.equals(1, result.deleted)
  end)

  it("refuses a page that is not a List with one log line, and keeps everything", function()
    src:list_page(page({ service_item("a", "10.96.0.1") }))
    local result, err
    local lines = logged(function()
      result, err = src:list_page("{not json")
    end)
    assert.is_nil(result)
    assert.matches("Service list: not a List", err, 1, true)
    assert.equals(1, #lines)
    assert.same({ "a" }, names(store))
  end)

  it("ingests ADDED, MODIFIED and DELETED lines and follows their resourceVersion", function()
    src:list_page(page({}, nil, "100"))
    local added = service_item("a", "10.96.0.1", "101")
    assert.equals("event", src:watch_line(watch("ADDED", added)))
    assert.equals("event", src:watch_line(watch("MODIFIED", service_item("a", "10.96.0.5", "102"))))
    assert.equals("10.96.0.5", store:get("Service", "default", "a").spec.clusterIP)
    assert.equals("event", src:watch_line(watch("DELETED", service_item("a", "10.96.0.5", "103"))))
    assert.same({}, names(store))
    assert.equals("103", src.resource_version)
  end)

  it("takes a BOOKMARK's resourceVersion and changes nothing else", function()
    assert.equals("bookmark", src:watch_line(watch("BOOKMARK", { kind = "Service",
      metadata = { resourceVersion = "555" } })))
    assert.equals("555", src.resource_version)
    assert.same({}, store:take_dirty())
  end)

  it("asks for a relist on an ERROR with 410 Gone", function()
    assert.equals("relist", src:watch_line(watch("ERROR", { kind = "Status", code = 410, reason = "Expired",
      message = "too old resource version" })))
  end)

  it("skips a malformed line and an object without a name, and says another ERROR ends the watch (\"error\"), "
    .. "with one log line each", function()
    src:list_page(page({ service_item("a", "10.96.0.1") }))
    local results = {}
    local lines = logged(function()
      results[1] = src:watch_line('{"type":"ADDED","object":')
      results[2] = src:watch_line(watch("ADDED", { metadata = { namespace = "default" } }))
      results[3] = src:watch_line(watch("ERROR", { kind = "Status", code = 500, message = "boom" }))
    end)
    assert.same({ "skipped", "skipped", "error" }, results)
    assert.equals(3, #lines)
    assert.equals("Service", lines[1].kind)
    assert.equals("(no metadata.name)", lines[2].name)
    assert.equals(500, lines[3].code)
    assert.same({ "a" }, names(store))
  end)
end)
