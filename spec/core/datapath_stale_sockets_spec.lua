-- Stale UDP sockets, on the real kernel with real clients: when a backend
-- leaves a UDP frontend, the connected sockets we translated to it are
-- destroyed (bpf_sock_destroy from the iter/udp program), so the client
-- opens a new socket and the frontend translates it to a live backend;
-- sockets of a backend that stays are left alone (docs/datapath.md,
-- "Stale sockets").
local kernel = require("helpers.kernel")

local VIP, PORT = "127.10.8.1", 5380
-- attempts for a client to land on one backend of two (each 1/2): failing
-- them all by chance has a probability of 2^-24
local LANDING_ATTEMPTS = 24

-- A connected UDP client (client.py udp-connected-pause) whose socket the
-- frontend translated to `backend`: clients are started until one lands
-- there (the slot comes from the socket cookie), and `during_pause(first)`
-- runs while it waits between its exchanges. Returns its results.
local function client_landing_on(env, backend, during_pause)
  for _ = 1, LANDING_ATTEMPTS do
    local landed = false
    local run = env:client_inside_pausing("udp-connected-pause", VIP, PORT, function(first)
      if first.backend == backend then
        landed = true
        during_pause(first)
      end
    end)
    if landed then
      return run
    end
  end
  error("no client landed on " .. backend .. " in " .. LANDING_ATTEMPTS .. " attempts")
end

describe("datapath: stale UDP sockets", function()
  after_each(kernel.close_all)

  it("aborts a connected UDP socket whose backend left the frontend, and a new socket reaches a live backend",
    function()
      local env = kernel.open(pending)
      local backends = env:udp_servers({ "127.0.0.1", "127.0.0.2" })
      local key = env:frontend{ address = VIP, port = PORT, protocol = "UDP", id = 801, backends = backends }
      local removed = backends[1]
      local destroyed

      local run = client_landing_on(env, removed, function()
        env:remove_backend(key, removed)
        destroyed = env:destroy_stale_sockets()
      end)

      -- the kernel disconnects the socket (a send() without an address:
      -- EDESTADDRREQ) and leaves ECONNABORTED as its error (a recv() gets it)
      assert.same({ errno = kernel.EDESTADDRREQ, step = "send", so_error = kernel.ECONNABORTED }, run.results[2])
      assert.same({ backend = backends[2], source = VIP .. ":" .. PORT }, run.results[3])
      assert.equals(1, destroyed)
    end)

  it("aborts a connected UDP socket in a network namespace of its own (a pod's)", function()
    local env = kernel.open(pending)
    local backends = env:udp_servers({ "127.0.0.1" })
    local pod = env:netns("pod")
    env:udp_servers_in_netns(pod, backends)
    local key = env:frontend{ address = VIP, port = PORT, protocol = "UDP", id = 807, backends = backends }
    local destroyed

    local run = env:client_inside_pausing("udp-connected-pause", VIP, PORT, function()
      env:remove_backend(key, backends[1])
      destroyed = env:destroy_stale_sockets()
    end, pod)

    assert.equals(kernel.ECONNABORTED, run.results[2].so_error)
    assert.equals(1, destroyed)
  end)

  it("keeps the connected UDP socket of a backend that stays", function()
    local env = kernel.open(pending)
    local backends = env:udp_servers({ "127.0.0.1", "127.0.0.2" })
    local key = env:frontend{ address = VIP, port = PORT, protocol = "UDP", id = 802, backends = backends }
    local removed, staying = backends[1], backends[2]
    local destroyed

    local kept = client_landing_on(env, staying, function()
      client_landing_on(env, removed, function()
        env:remove_backend(key, removed)
        destroyed = env:destroy_stale_sockets()
      end)
    end)

    assert.equals(1, destroyed) -- the other client's
    assert.same({ backend = staying, source = VIP .. ":" .. PORT }, kept.results[2])
  end)

  it("keeps a connected UDP socket to the same backend through another frontend", function()
    local env = kernel.open(pending)
    local backends = env:udp_servers({ "127.0.0.1", "127.0.0.2" })
    local key = env:frontend{ address = VIP, port = PORT, protocol = "UDP", id = 803, backends = backends }
    local other_vip = "127.10.8.2"
    env:frontend{ address = other_vip, port = PORT, protocol = "UDP", id = 804, backends = { backends[1] } }
    local destroyed

    local run = env:client_inside_pausing("udp-connected-pause", other_vip, PORT, function()
      env:remove_backend(key, backends[1])
      destroyed = env:destroy_stale_sockets()
    end)

    assert.equals(0, destroyed)
    assert.same({ backend = backends[1], source = other_vip .. ":" .. PORT }, run.results[2])
  end)

  it("aborts the connected UDP sockets of a frontend that is deleted", function()
    local env = kernel.open(pending)
    local backends = env:udp_servers({ "127.0.0.1" })
    local key = env:frontend{ address = VIP, port = PORT, protocol = "UDP", id = 805, backends = backends }
    local destroyed

    local run = env:client_inside_pausing("udp-connected-pause", VIP, PORT, function()
      env:delete_frontend(key)
      destroyed = env:destroy_stale_sockets()
    end)

    assert.equals(kernel.ECONNABORTED, run.results[2].so_error)
    assert.equals(1, destroyed)
  end)

  it("leaves a connected UDP socket it did not translate, even to a removed backend's address", function()
    local env = kernel.open(pending)
    local backends = env:udp_servers({ "127.0.0.1", "127.0.0.2" })
    local key = env:frontend{ address = VIP, port = PORT, protocol = "UDP", id = 806, backends = backends }
    local address, port = kernel.split_endpoint(backends[1])
    local destroyed

    -- straight to the backend's address: nothing to translate, no reverse record
    local run = env:client_inside_pausing("udp-connected-pause", address, port, function()
      env:remove_backend(key, backends[1])
      destroyed = env:destroy_stale_sockets()
    end)

    assert.equals(0, destroyed)
    assert.same({ backend = backends[1], source = backends[1] }, run.results[2])
  end)
end)
