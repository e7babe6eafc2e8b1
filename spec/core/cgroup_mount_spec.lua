-- core.ensure_cgroup2(path): the agent's --cgroup made a cgroup2 mount when
-- nothing is mounted there (issue 7; as Cilium mounts /run/cilium/cgroupv2),
-- and refused, naming the path, when something else is there.
--
-- Safety (CONTRACTS.md, "Test safety"): cgroup2 mounted on a fresh directory
-- shows the root of the caller's cgroup namespace. Every mount here is made
-- by a child that first moved into a test cgroup of ours and then entered a
-- new cgroup namespace (rooted at that cgroup) and a new private mount
-- namespace (the mount vanishes with it). Nothing is attached in this spec.
local cjson = require("cjson")
local core_env = require("helpers.core_env")
local mountinfo = require("helpers.mountinfo")
local scratch = require("helpers.scratch")

local build_dir = os.getenv("BALANCING_BUILD_DIR") or "build"

-- Runs in the child, in its own cgroup and mount namespaces; prints one JSON
-- object with what each call returned and what /proc/self/mountinfo shows.
local CHILD = [[
local core = require("balancing.core")
local cjson = require("cjson")
local mount_at = require("helpers.mountinfo").at
local dir = arg[1]

local function call(path)
  local ok, mounted_or_err = core.ensure_cgroup2(path)
  if ok then
    return { ok = true, mounted = mounted_or_err, mount = mount_at(path) }
  end
  return { ok = false, err = mounted_or_err, mount = mount_at(path) }
end

local stat = io.open("/proc/self/stat")
local pid = stat:read("*n")
stat:close()

local out = {}
local empty = dir .. "/empty"
assert(os.execute("mkdir " .. empty) == 0)
out.empty = call(empty)
local procs = io.open(empty .. "/cgroup.procs")
out.empty.holds_self = procs and ("\n" .. procs:read("*a")):find("\n" .. pid .. "\n", 1, true) ~= nil
out.again = call(empty)
out.missing = call(dir .. "/missing/a/b")
local tmpfs = dir .. "/tmpfs"
assert(os.execute("mkdir " .. tmpfs .. " && mount -t tmpfs none " .. tmpfs) == 0)
out.tmpfs = call(tmpfs)
print(cjson.encode(out))
]]

-- CHILD in a new process moved into cgroup, then into new cgroup and mount
-- namespaces; its decoded output. The sanitizer preload (if any) is kept
-- for luajit, which loads the core, and kept from sh and unshare.
local function run_in_namespaces(cgroup, dir)
  scratch.write_file(dir .. "/child.lua", CHILD)
  local script = 'echo $$ > "$1/cgroup.procs" || exit 1; preload="$LD_PRELOAD"; unset LD_PRELOAD; '
    .. 'exec unshare --mount --cgroup --propagation private env LD_PRELOAD="$preload" luajit "$2" "$3"'
  local pipe = assert(io.popen(string.format("LUA_CPATH=%s LUA_PATH=%s sh -c %s sh %s %s %s 2>&1",
    scratch.quote(build_dir .. "/lua/?.so;;"), scratch.quote("lua/?.lua;spec/?.lua;;"), scratch.quote(script),
    scratch.quote(cgroup), scratch.quote(dir .. "/child.lua"), scratch.quote(dir))))
  local output = pipe:read("*a")
  pipe:close()
  local ok, result = pcall(cjson.decode, output:match("([^\n]+)\n*$") or "")
  assert(ok and type(result) == "table", "the namespaced child failed:\n" .. output)
  return result
end

describe("core.ensure_cgroup2", function()
  local dir
  after_each(function()
    if dir then
      scratch.remove_dir(dir)
      dir = nil
    end
    core_env.close_all()
  end)

  it("accepts a cgroup v2 directory as it is: true, nothing mounted", function()
    local env = core_env.open(pending)
    if not env then
      return
    end
    local cgroup = env:cgroup()
    local ok, mounted = env.core.ensure_cgroup2(cgroup)
    assert.is_true(ok)
    assert.is_false(mounted)
    assert.is_nil(mountinfo.at(cgroup))
  end)

  it("refuses a file, naming the path", function()
    local env = core_env.open(pending)
    if not env then
      return
    end
    dir = scratch.temp_dir()
    scratch.write_file(dir .. "/file", "x")
    local ok, err = env.core.ensure_cgroup2(dir .. "/file")
    assert.is_nil(ok)
    assert.matches(dir .. "/file: not a directory", err, 1, true)
  end)

  it("refuses a non-empty directory that is not cgroup2, naming the path", function()
    local env = core_env.open(pending)
    if not env then
      return
    end
    dir = scratch.temp_dir()
    scratch.write_file(dir .. "/full/something", "x")
    local ok, err = env.core.ensure_cgroup2(dir .. "/full")
    assert.is_nil(ok)
    assert.matches(dir .. "/full: not a cgroup v2 directory, and not empty", err, 1, true)
    assert.is_nil(mountinfo.at(dir .. "/full"))
  end)

  it("refuses a missing path inside the cgroup2 hierarchy, and creates no cgroup", function()
    local env = core_env.open(pending)
    if not env then
      return
    end
    local cgroup = env:cgroup()
    local ok, err = env.core.ensure_cgroup2(cgroup .. "/no/such")
    assert.is_nil(ok)
    assert.matches(cgroup .. "/no/such: no such cgroup", err, 1, true)
    assert.is_nil(require("lfs").attributes(cgroup .. "/no"))
  end)

  it("refuses a relative path", function()
    local env = core_env.open(pending)
    if not env then
      return
    end
    local ok, err = env.core.ensure_cgroup2("run/cgroupv2")
    assert.is_nil(ok)
    assert.matches("run/cgroupv2: not an absolute path", err, 1, true)
  end)

  describe("in a child's own cgroup and mount namespaces", function()
    local result
    local function run()
      local env = core_env.open(pending)
      if not env then
        return nil
      end
      dir = scratch.temp_dir()
      result = run_in_namespaces(env:cgroup(), dir)
      return result
    end

    it("mounts cgroup2 on an empty directory, showing the namespace's root: the test cgroup", function()
      if not run() then
        return
      end
      assert.same({ ok = true, mounted = true, mount = { root = "/", fstype = "cgroup2" }, holds_self = true },
        result.empty)
      -- gone with the child's mount namespace: never in ours
      assert.is_nil(mountinfo.at(dir .. "/empty"))
    end)

    it("then takes that mount as it is: true, nothing mounted again", function()
      if not run() then
        return
      end
      assert.same({ ok = true, mounted = false, mount = { root = "/", fstype = "cgroup2" } }, result.again)
    end)

    it("creates a missing directory outside cgroup2 and mounts cgroup2 there", function()
      if not run() then
        return
      end
      assert.same({ ok = true, mounted = true, mount = { root = "/", fstype = "cgroup2" } }, result.missing)
    end)

    it("refuses a directory where another file system is mounted, naming the path and the file system", function()
      if not run() then
        return
      end
      assert.is_false(result.tmpfs.ok)
      assert.matches(dir .. "/tmpfs: tmpfs is mounted there, not cgroup2", result.tmpfs.err, 1, true)
      assert.equals("tmpfs", result.tmpfs.mount.fstype)
    end)
  end)
end)
