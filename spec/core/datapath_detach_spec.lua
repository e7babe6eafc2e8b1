-- Attach, detach, unpin: the four programs sit on our cgroup as bpf links;
-- after dp:detach() nothing is translated, after dp:unpin() nothing of ours
-- is left in bpffs (docs/core-api.md, "Loading, pinning, attaching").
local kernel = require("helpers.kernel")

local VIP, PORT = "127.10.0.1", 80

-- What `bpftool cgroup show` calls our four hooks.
local ATTACH_TYPES = {
  "cgroup_inet4_connect", "cgroup_udp4_sendmsg", "cgroup_udp4_recvmsg", "cgroup_inet4_getpeername",
}

local function frontend_with_a_backend(env)
  env:frontend{ address = VIP, port = PORT, id = 1, backends = env:tcp_servers({ "127.0.0.2" }) }
end

describe("datapath: attach, detach and unpin", function()
  after_each(kernel.close_all)

  it("attaches connect4, sendmsg4, recvmsg4 and getpeername4 to the cgroup", function()
    local env = kernel.open(pending)

    local programs = env:attached_programs()

    for _, attach_type in ipairs(ATTACH_TYPES) do
      assert.matches(attach_type, programs, 1, true)
    end
  end)

  it("translates nothing after dp:detach()", function()
    local env = kernel.open(pending)
    frontend_with_a_backend(env)
    assert.is_nil(env:client_inside("tcp", VIP, PORT, 1).results[1].errno, "translated while attached")
    env:drain_events(0.1)

    assert.is_true(env:detach())

    assert.same({ { errno = kernel.ECONNREFUSED, step = "connect" } }, env:client_inside("tcp", VIP, PORT, 1).results)
    assert.same({}, env:drain_events(0.1))
    for _, attach_type in ipairs(ATTACH_TYPES) do
      assert.is_nil(env:attached_programs():find(attach_type, 1, true), attach_type .. " still attached")
    end
  end)

  it("leaves nothing in bpffs after dp:unpin(): the pin directory is gone", function()
    local env = kernel.open(pending)
    frontend_with_a_backend(env)
    local lfs = require("lfs")
    assert.equals("directory", lfs.attributes(env.bpffs, "mode"))

    assert.is_true(env:unpin())

    assert.is_nil(lfs.attributes(env.bpffs, "mode"), env.bpffs .. " is still there")
    assert.same({ { errno = kernel.ECONNREFUSED, step = "connect" } }, env:client_inside("tcp", VIP, PORT, 1).results)
    assert.equals("", (env:attached_programs():gsub("%s", "")))
  end)
end)
