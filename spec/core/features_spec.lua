-- core.features(): what the agent checks before it loads anything
-- (CONTRACTS.md: cgroup sock_addr hooks, bpf_set_retval, BTF, ring buffer),
-- probed on the real kernel, and the test-only variable
-- BALANCING_FEATURES_PRETEND_MISSING that makes the check report some
-- missing (docs/testing.md).
local core_env = require("helpers.core_env")
local ffi = require("ffi")

pcall(ffi.cdef, [[
int setenv(const char *name, const char *value, int overwrite);
int unsetenv(const char *name);
]])

local PRETEND = "BALANCING_FEATURES_PRETEND_MISSING"
local ALL_NAMES = "cgroup sock_addr hooks, bpf_set_retval, BTF (/sys/kernel/btf/vmlinux), ring buffer"

-- core.features() with the variable set to value for the call only.
local function features_pretending(value)
  local core = require("balancing.core")
  ffi.C.setenv(PRETEND, value, 1)
  local ok, present, missing = pcall(core.features)
  ffi.C.unsetenv(PRETEND)
  assert(ok, present)
  return present, missing
end

describe("core.features", function()
  after_each(core_env.close_all)

  it("finds on this kernel everything the agent needs, and names nothing missing", function()
    local env = core_env.open(pending) -- the probes load programs: root
    if not env then
      return
    end
    local present, missing = env.core.features()
    assert.same({ cgroup_sock_addr = true, bpf_set_retval = true, btf = true, ring_buffer = true }, present)
    assert.is_nil(missing)
  end)

  it("reports what BALANCING_FEATURES_PRETEND_MISSING names as missing, in the log's words", function()
    if not core_env.open(pending) then
      return
    end
    local present, missing = features_pretending("ring_buffer,bpf_set_retval")
    assert.same({ cgroup_sock_addr = true, bpf_set_retval = false, btf = true, ring_buffer = false }, present)
    assert.equals("bpf_set_retval, ring buffer", missing)
  end)

  it("names all four when all four are missing, in a fixed order", function()
    if not core_env.open(pending) then
      return
    end
    local _, missing = features_pretending("btf, ring_buffer ,cgroup_sock_addr,bpf_set_retval")
    assert.equals(ALL_NAMES, missing)
  end)

  it("ignores a word of the variable that names no feature", function()
    if not core_env.open(pending) then
      return
    end
    local present, missing = features_pretending("no_such_feature")
    assert.is_nil(missing)
    assert.is_true(present.ring_buffer)
  end)
end)
