-- core.kube_client (core/kube_http.c, core/kube_watch.c, core/lua_kube.c)
-- through its Lua binding, against the fake API server on 127.0.0.1 (TLS,
-- a token): a kind listed in pages and watched, a request with its answer,
-- and what a callback may not do. No root, no kernel.
local apiserver = require("helpers.apiserver")
local core = require("balancing.core")
local kubeconfig = require("balancing.kubeconfig")

local TOKEN = "kube-client-spec"

local function service(name)
  return { apiVersion = "v1", kind = "Service", metadata = { name = name, namespace = "demo" },
    spec = { clusterIP = "10.96.0.1", ports = { { port = 80 } } } }
end

-- Turns the loop until check() holds, at most seconds.
local function run_until(client, seconds, check)
  local deadline = os.time() + seconds
  while not check() and os.time() <= deadline do
    client:run_once(0.2)
  end
  return check()
end

describe("core.kube_client", function()
  local server, client
  before_each(function()
    server = apiserver.start({ tls = true, token = TOKEN })
    client = assert(core.kube_client(assert(kubeconfig.from_file(server:kubeconfig()))))
  end)
  after_each(function()
    if client then
      client:close()
    end
    apiserver.stop_all()
  end)

  it("lists a kind in pages, then watches it from the list's resourceVersion", function()
    server:seed({ service("a"), service("b"), service("c") })
    local pages, lines, version = {}, {}, nil
    local sink = {
      list_page = function(body)
        local list = require("cjson").decode(body)
        pages[#pages + 1] = #list.items
        version = list.metadata.resourceVersion or version
        local continue = list.metadata.continue
        return (continue and continue ~= "") and continue or true
      end,
      list_restarted = function() pages = {} end,
      watch_line = function(line)
        lines[#lines + 1] = require("cjson").decode(line)
        return "event"
      end,
      resource_version = function() return version end,
    }
    assert.is_true(client:watch({ kind = "Service", path = "/api/v1/services", page_size = 2, sink = sink }))
    assert.truthy(run_until(client, 10, function() return client:stats().Service.synced end))
    assert.same({ 2, 1 }, pages)
    assert.equals("watching", client:stats().Service.state)
    server:seed({ service("d") })
    assert.truthy(run_until(client, 10, function() return #lines == 1 end))
    assert.equals("ADDED", lines[1].type)
    assert.equals("d", lines[1].object.metadata.name)
    assert.equals(1, client:stats().Service.events)
  end)

  it("answers a request's callback with the status and the body", function()
    local answer
    assert.is_true(client:request({ path = "/api/v1/namespaces/demo/services/missing",
      on_done = function(status, body, err)
        answer = { status = status, body = body, err = err }
      end }))
    assert.truthy(run_until(client, 10, function() return answer end))
    assert.equals(404, answer.status)
    assert.matches('"reason": *"NotFound"', answer.body)
    assert.is_nil(answer.err)
  end)

  it("refuses close and rewatch from inside its callbacks (they would free what C still uses)", function()
    local refused
    assert.is_true(client:request({ path = "/version", on_done = function()
      local ok, err = pcall(client.close, client)
      refused = { ok = ok, err = err }
    end }))
    assert.truthy(run_until(client, 10, function() return refused end))
    assert.is_false(refused.ok)
    assert.matches("not from inside the client's callbacks", refused.err)
    -- still usable: a timer callback may close it
    local closed = false
    client:after(0, function() client:close() closed = true end)
    assert.truthy(run_until(client, 5, function() return closed end))
    client = nil
  end)

  it("refuses a token that would write another header", function()
    client:close()
    client = assert(core.kube_client({ server = server.url, ca_file = server.ca_file, token = "a\r\nX-Evil: 1" }))
    local ok, err = client:request({ path = "/version", on_done = function() end })
    assert.is_nil(ok)
    assert.matches("a byte a token cannot have", err)
  end)
end)
