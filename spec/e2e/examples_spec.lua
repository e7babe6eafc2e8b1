-- The examples stay true: `balancing-agent plan` on examples/cluster/manifests
-- prints exactly the checked-in expected outputs (reviewed by hand), and the
-- standalone directory plans its loopback frontends.
local cjson = require("cjson")
local scratch = require("helpers.scratch")

local build_dir = os.getenv("BALANCING_BUILD_DIR") or "build"
local AGENT = build_dir .. "/bin/balancing-agent"

local function read_all(path)
  local file = assert(io.open(path, "rb"))
  local text = file:read("*a")
  file:close()
  return text
end

-- Runs the agent with arguments (no shell metacharacters in them); returns
-- status, stdout, stderr.
local function run(args)
  local work = scratch.temp_dir()
  local command = "env -u NODE_NAME -u BALANCING_MANIFESTS -u BALANCING_OUT_CLUSTER -u BALANCING_LUA_DIR "
    .. "-u BALANCING_LOG_LEVEL " .. AGENT .. " " .. table.concat(args, " ")
    .. " >" .. work .. "/out 2>" .. work .. "/err; echo $?"
  local handle = assert(io.popen(command))
  local status = tonumber(handle:read("*l"))
  handle:close()
  local stdout, stderr = read_all(work .. "/out"), read_all(work .. "/err")
  scratch.remove_dir(work)
  return status, stdout, stderr
end

-- The first line where two texts differ, for a readable failure.
local function first_difference(expected, actual)
  local e, a = {}, {}
  for line in (expected .. "\n"):gmatch("([^\n]*)\n") do
    e[#e + 1] = line
  end
  for line in (actual .. "\n"):gmatch("([^\n]*)\n") do
    a[#a + 1] = line
  end
  for i = 1, math.max(#e, #a) do
    if e[i] ~= a[i] then
      return string.format("line %d\nexpected: %s\nactual:   %s", i, tostring(e[i]), tostring(a[i]))
    end
  end
end

describe("examples/cluster", function()
  local MANIFESTS = "examples/cluster/manifests"

  it("plans node-1 exactly as expected-plan-node-1.json", function()
    local status, stdout, stderr = run({ "plan", "--manifests", MANIFESTS, "--node-name", "node-1", "--json" })
    assert.equals(0, status)
    assert.equals("", stderr)
    local expected = read_all("examples/cluster/expected-plan-node-1.json")
    assert.is_nil(first_difference(expected, stdout))
    assert.equals(expected, stdout)
  end)

  it("plans node-1 exactly as expected-plan-node-1.txt", function()
    local status, stdout = run({ "plan", "--manifests", MANIFESTS, "--node-name", "node-1" })
    assert.equals(0, status)
    local expected = read_all("examples/cluster/expected-plan-node-1.txt")
    assert.is_nil(first_difference(expected, stdout))
    assert.equals(expected, stdout)
  end)

  it("has a JSON and a table expected output that list the same frontends", function()
    local doc = cjson.decode(read_all("examples/cluster/expected-plan-node-1.json"))
    local rows, rejected, in_rejected = 0, 0, false
    for line in read_all("examples/cluster/expected-plan-node-1.txt"):gmatch("[^\n]+") do
      if line:match("^rejected:") then
        in_rejected = true
      elseif in_rejected and not line:match("^KIND ") then
        rejected = rejected + 1
      elseif line:match("^service ") or line:match("^localRedirect ") or line:match("^balancing ") then
        rows = rows + 1
      end
    end
    assert.equals(#doc.frontends, rows)
    assert.equals(#doc.rejected, rejected)
    assert.is_true(rejected > 0) -- the example shows refusals too
  end)
end)

describe("examples/standalone", function()
  local function plan()
    local status, stdout, stderr = run({ "plan", "--manifests", "examples/standalone", "--node-name", "standalone",
      "--json" })
    assert.equals(0, status)
    assert.equals("", stderr)
    return cjson.decode(stdout)
  end

  it("is a valid directory: nothing rejected", function()
    assert.same({}, plan().rejected)
  end)

  it("programs its Services, LocalRedirectPolicy and BalancingPolicy on loopback", function()
    local by_key = {}
    for _, f in ipairs(plan().frontends) do
      by_key[f.type .. " " .. f.address .. ":" .. f.port .. "/" .. f.protocol] = f
      assert.matches("^127%.", f.address)
      for _, b in ipairs(f.backends) do
        assert.matches("^127%.", b.address)
        -- a BalancingPolicy's fixed addresses are not this node's (127.0.0.1)
        assert.equals(f.type ~= "balancing", b["local"])
      end
    end
    local function backends(key)
      local f = by_key[key]
      assert(f, "no frontend " .. key)
      local list = {}
      for _, b in ipairs(f.backends) do
        list[#list + 1] = b.address .. ":" .. b.port
      end
      return list
    end
    assert.same({ "127.0.0.1:18080", "127.0.0.2:18080" }, backends("service 127.10.0.1:80/TCP"))
    assert.same({ "127.0.0.1:15353" }, backends("service 127.10.0.53:53/UDP"))
    assert.same({ "127.0.0.1:15353" }, backends("service 127.10.0.53:53/TCP"))
    -- node-local DNS: the pod on this node
    assert.same({ "127.0.0.3:15353" }, backends("localRedirect 127.10.0.10:53/UDP"))
    assert.same({ "127.0.0.3:15353" }, backends("localRedirect 127.10.0.10:53/TCP"))
    assert.equals("node-local-dns", by_key["localRedirect 127.10.0.10:53/UDP"].owner)
    assert.equals(10, by_key["localRedirect 127.10.0.10:53/UDP"].id)
    assert.same({ "127.0.0.4:18080", "127.0.0.5:18080" }, backends("balancing 127.10.0.2:80/TCP"))
    assert.equals("web-global", by_key["balancing 127.10.0.2:80/TCP"].owner)
    assert.equals(20, by_key["balancing 127.10.0.2:80/TCP"].id)
  end)
end)
