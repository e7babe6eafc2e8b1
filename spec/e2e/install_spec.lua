-- An installed agent is self-contained: `cmake --install` into a fresh prefix,
-- then the installed balancing-agent and inspect run from a directory outside
-- the source tree, with an environment that names nothing in it and — in a
-- mount namespace of their own — the source tree itself hidden under an empty
-- tmpfs (the host's mounts are not touched). plan must print what the build
-- tree's binary prints for the same manifests.
local scratch = require("helpers.scratch")

local build_dir = os.getenv("BALANCING_BUILD_DIR") or "build"
local quote, run = scratch.quote, scratch.run

local function source_root()
  local handle = assert(io.popen("pwd -P"))
  local dir = handle:read("*l")
  handle:close()
  return dir
end

local function is_root()
  local status, stdout = run("id -u")
  return status == 0 and stdout:match("^0%s*$") ~= nil
end

-- A command line run from / with only PATH in the environment, the source
-- tree hidden in a private mount namespace when `hide` is given.
local function outside(command, hide)
  local inner = "cd / && " .. command
  if hide then
    inner = "mount -t tmpfs balancing-hidden " .. quote(hide) .. " && " .. inner
    return run("env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin unshare --mount --propagation private sh -c "
      .. quote(inner))
  end
  return run("env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin sh -c " .. quote(inner))
end

describe("the installed agent", function()
  local root = source_root()
  local prefix, manifests

  setup(function()
    prefix = scratch.temp_dir()
    local status, _, stderr = run("cmake --install " .. quote(build_dir) .. " --prefix " .. quote(prefix))
    assert(status == 0, "cmake --install failed: " .. stderr)
    manifests = prefix .. "/manifests"
    assert(run("mkdir " .. quote(manifests) .. " && cp " .. quote(root) .. "/examples/cluster/manifests/* "
      .. quote(manifests)) == 0)
  end)

  teardown(function()
    if prefix then
      scratch.remove_dir(prefix)
    end
  end)

  it("installs the binaries, the built-in Lua modules, the header and the BPF object under the prefix", function()
    for _, path in ipairs({ "bin/balancing-agent", "bin/inspect", "share/balancing/balancing.h",
      "share/balancing/balancing.bpf.o", "share/balancing/lua/balancing/agent.lua",
      "share/balancing/lua/balancing/reconcile/service.lua", "share/balancing/lua/balancing/inspect/main.lua" }) do
      assert.are.equal(0, (run("test -f " .. quote(prefix .. "/" .. path))), path .. " is not installed")
    end
  end)

  it("plans from a directory outside the tree, with an environment naming nothing in it, as the build tree does",
    function()
      local status, expected = run(quote(build_dir .. "/bin/balancing-agent") .. " plan --node-name node-1 --manifests "
        .. quote(root .. "/examples/cluster/manifests"))
      assert.are.equal(0, status)
      local got_status, got, stderr = outside(quote(prefix .. "/bin/balancing-agent")
        .. " plan --node-name node-1 --manifests " .. quote(manifests))
      assert.are.equal(0, got_status, stderr)
      assert.are.equal(expected, got)
      assert.truthy(got:find("default/web", 1, true))
    end)

  describe("with the source tree hidden (a private mount namespace)", function()
    local function needs_root()
      if not is_root() then
        pending("needs root for a mount namespace")
        return false
      end
      return true
    end

    it("plan prints what the build tree's binary prints", function()
      if not needs_root() then
        return
      end
      local _, expected = run(quote(build_dir .. "/bin/balancing-agent") .. " plan --json --node-name node-1 "
        .. "--manifests " .. quote(root .. "/examples/cluster/manifests"))
      local status, got, stderr = outside("test ! -e " .. quote(root .. "/CMakeLists.txt") .. " && "
        .. quote(prefix .. "/bin/balancing-agent") .. " plan --json --node-name node-1 --manifests "
        .. quote(manifests), root)
      assert.are.equal(0, status, stderr)
      assert.are.equal(expected, got)
    end)

    it("inspect --help answers", function()
      if not needs_root() then
        return
      end
      local status, stdout, stderr = outside(quote(prefix .. "/bin/inspect") .. " --help", root)
      assert.are.equal(0, status, stderr)
      assert.truthy(stdout:find("showMapData", 1, true))
    end)

    it("a binary without the installed layout cannot run there (the hiding is real)", function()
      if not needs_root() then
        return
      end
      local bare = prefix .. "/bare"
      assert(run("mkdir -p " .. quote(bare .. "/bin") .. " && cp " .. quote(prefix .. "/bin/balancing-agent") .. " "
        .. quote(bare .. "/bin/")) == 0)
      local status = outside(quote(bare .. "/bin/balancing-agent") .. " plan --node-name node-1 --manifests "
        .. quote(manifests), root)
      assert.are_not.equal(0, status)
    end)
  end)
end)
