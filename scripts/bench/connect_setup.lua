-- Helper of scripts/bench/connect: programs N frontends, three ways.
--
--   luajit connect_setup.lua vip N I
--       the VIP of frontend I (0-based) of N: 127.10.x.y
--   luajit connect_setup.lua iptables N BACKEND_PORT BACKENDS
--       an iptables-restore file (nat table) laid out as kube-proxy's
--       iptables mode writes it, on stdout
--   luajit connect_setup.lua nft N BACKEND_PORT BACKENDS PREFIX
--       `nft -f` files PREFIX.000.nft, PREFIX.001.nft, ... (load them in
--       order) laid out as kube-proxy's nftables mode writes its table
--   luajit connect_setup.lua hook N BACKEND_PORT BACKENDS BPFFS CGROUP [uncounted|events-off]
--       loads Balancing's programs with balancing.core into the pin dir
--       BPFFS, attaches them to CGROUP, writes N frontends into map_service
--       and map_backend, prints "ready", then waits for EOF on stdin and
--       detaches and unpins everything (also when anything above failed).
--       Events are "all" (the agent's default). "uncounted": programs
--       loaded with count_translations = false, the baseline that shows what
--       the per-owner counters cost; "events-off": --events off.
--   luajit connect_setup.lua drain BPFFS
--       reads BPFFS/map_event as fast as events come, taking them unread
--       (the agent's reader, without its formatting, which runs on its own
--       CPU): without a reader the ring fills after ~50,000 events and every
--       later bpf_ringbuf_reserve fails fast, which is not what a node with
--       an agent pays. Runs until killed.
--
-- Every Service has VIP:80/TCP and VIP:80/UDP (as kube-dns has 53 on both);
-- its backends are 127.0.0.2:PORT,
-- 127.0.0.3:PORT, ... (not 127.0.0.1, the client's source address, so no
-- rule sees a hairpin connection). Addresses stay on loopback.

local VIP_PORT = 80
local PROTOCOLS = { "tcp", "udp" }

local function vip(i)
  -- 250 per /24 keeps .0 and .255 out
  return string.format("127.10.%d.%d", math.floor(i / 250), i % 250 + 1)
end

local function backend_address(b)
  return string.format("127.0.0.%d", b + 2)
end

local function out(...)
  io.stdout:write(...)
end

-- kube-proxy iptables mode, nat table (pkg/proxy/iptables/proxier.go): every
-- Service port is one rule in KUBE-SERVICES (a linear list), a KUBE-SVC chain
-- that marks off-cluster sources for masquerade and picks an endpoint with
-- statistic/random, and a KUBE-SEP chain per endpoint that DNATs. 127.0.0.0/8
-- stands in for the cluster CIDR, so the client is an in-cluster client that
-- is not masqueraded (the usual pod-to-Service case).
local function iptables(n, port, backends)
  local lines = { "*nat" }
  local function add(line)
    lines[#lines + 1] = line
  end
  add(":KUBE-SERVICES - [0:0]")
  add(":KUBE-NODEPORTS - [0:0]")
  add(":KUBE-POSTROUTING - [0:0]")
  add(":KUBE-MARK-MASQ - [0:0]")
  -- one chain per Service port, as kube-proxy has: index 2i for TCP, 2i+1 for UDP
  for i = 0, 2 * n - 1 do
    add(string.format(":KUBE-SVC-%016X - [0:0]", i))
    for b = 0, backends - 1 do
      add(string.format(":KUBE-SEP-%08X%08X - [0:0]", i, b))
    end
  end
  add('-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES')
  add('-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING')
  add("-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000")
  add("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN")
  add("-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000")
  add('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
    .. "-j MASQUERADE --random-fully")
  for i = 0, n - 1 do
    for p, proto in ipairs(PROTOCOLS) do
      add(string.format('-A KUBE-SERVICES -d %s/32 -p %s -m comment --comment "bench/svc%d:%s cluster IP" '
        .. "-m %s --dport %d -j KUBE-SVC-%016X", vip(i), proto, i, proto, proto, VIP_PORT, 2 * i + p - 1))
    end
  end
  add('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the '
    .. 'last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
  for i = 0, n - 1 do
    for p, proto in ipairs(PROTOCOLS) do
      local chain = 2 * i + p - 1
      local svc = string.format("KUBE-SVC-%016X", chain)
      add(string.format('-A %s ! -s 127.0.0.0/8 -d %s/32 -p %s -m comment --comment "bench/svc%d:%s cluster IP" '
        .. "-m %s --dport %d -j KUBE-MARK-MASQ", svc, vip(i), proto, i, proto, proto, VIP_PORT))
      for b = 0, backends - 1 do
        local sep = string.format("KUBE-SEP-%08X%08X", chain, b)
        local comment = string.format('-m comment --comment "bench/svc%d:%s -> %s:%d"', i, proto, backend_address(b),
          port)
        local left = backends - b
        if left > 1 then
          add(string.format("-A %s %s -m statistic --mode random --probability %.11f -j %s",
            svc, comment, 1 / left, sep))
        else
          add(string.format("-A %s %s -j %s", svc, comment, sep))
        end
        add(string.format('-A %s -s %s/32 -m comment --comment "bench/svc%d:%s" -j KUBE-MARK-MASQ',
          sep, backend_address(b), i, proto))
        add(string.format('-A %s -p %s -m comment --comment "bench/svc%d:%s" -m %s -j DNAT --to-destination %s:%d',
          sep, proto, i, proto, proto, backend_address(b), port))
      end
    end
  end
  add("COMMIT")
  out(table.concat(lines, "\n"), "\n")
end

-- kube-proxy nftables mode (pkg/proxy/nftables/proxier.go): the nat hooks jump
-- to "services", which does one lookup in the verdict map service-ips
-- (ipv4_addr . inet_proto . inet_service : verdict) and goes to a per-Service
-- chain; that chain marks off-cluster sources for masquerade and picks an
-- endpoint chain with numgen random; the endpoint chain DNATs.
local function nft(n, port, backends, prefix)
  local files = 0
  local lines = {}
  local function add(line)
    lines[#lines + 1] = line
  end
  local function flush()
    local path = string.format("%s.%03d.nft", prefix, files)
    local file = assert(io.open(path, "w"))
    file:write(table.concat(lines, "\n"), "\n")
    file:close()
    files = files + 1
    lines = {}
  end
  local function service_chain(i, proto)
    return string.format("service-%08X-bench/svc%d/%s/%s", i, i, proto, proto)
  end
  local function endpoint_chain(i, b, proto)
    return string.format("endpoint-%08X-bench/svc%d/%s/%s__%s/%d", i * 16 + b, i, proto, proto, backend_address(b),
      port)
  end
  add("table ip kube-proxy {")
  add('  comment "rules for kube-proxy"')
  add("  chain mark-for-masquerade {")
  add("    mark set mark or 0x4000")
  add("  }")
  add("  chain masquerading {")
  add("    meta mark & 0x4000 == 0 return")
  add("    meta mark set meta mark ^ 0x4000")
  add("    masquerade fully-random")
  add("  }")
  add("  map service-ips {")
  add("    type ipv4_addr . inet_proto . inet_service : verdict")
  add('    comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"')
  add("  }")
  add("  map service-nodeports {")
  add("    type inet_proto . inet_service : verdict")
  add('    comment "NodePort traffic"')
  add("  }")
  add("  chain nodeports {")
  add("    meta l4proto . th dport vmap @service-nodeports")
  add("  }")
  add("  chain services {")
  add("    ip daddr . meta l4proto . th dport vmap @service-ips")
  add("    fib daddr type local ip daddr != 127.0.0.0/8 jump nodeports")
  add("  }")
  add("  chain nat-output {")
  add("    type nat hook output priority -100; policy accept;")
  add("    jump services")
  add("  }")
  add("  chain nat-postrouting {")
  add("    type nat hook postrouting priority 100; policy accept;")
  add("    jump masquerading")
  add("  }")
  add("}")
  flush()
  -- one transaction per CHUNK Services: the kernel's checks of a
  -- transaction grow faster than linearly with the chains it adds
  local chunk = 1000
  for first = 0, n - 1, chunk do
    local last = math.min(first + chunk, n) - 1
    add("table ip kube-proxy {")
    for i = first, last do
      for _, proto in ipairs(PROTOCOLS) do
        local endpoints = {}
        for b = 0, backends - 1 do
          add(string.format("  chain %s {", endpoint_chain(i, b, proto)))
          add(string.format("    ip saddr %s jump mark-for-masquerade", backend_address(b)))
          add(string.format("    meta l4proto %s dnat to %s:%d", proto, backend_address(b), port))
          add("  }")
          endpoints[#endpoints + 1] = string.format("%d : goto %s", b, endpoint_chain(i, b, proto))
        end
        add(string.format("  chain %s {", service_chain(i, proto)))
        add(string.format("    ip daddr %s %s dport %d ip saddr != 127.0.0.0/8 jump mark-for-masquerade",
          vip(i), proto, VIP_PORT))
        add(string.format("    numgen random mod %d vmap { %s }", backends, table.concat(endpoints, ", ")))
        add("  }")
      end
    end
    add("}")
    local elements = {}
    for i = first, last do
      for _, proto in ipairs(PROTOCOLS) do
        elements[#elements + 1] = string.format("%s . %s . %d : goto %s", vip(i), proto, VIP_PORT,
          service_chain(i, proto))
      end
    end
    add(string.format("add element ip kube-proxy service-ips { %s }", table.concat(elements, ", ")))
    flush()
  end
end

-- Balancing: the real programs through balancing.core, N frontends written
-- through the applier.
local function hook(n, port, backends, bpffs, cgroup, mode)
  local ffi = require("ffi")
  local core = require("balancing.core")
  local abi = require("balancing.abi")

  local dp, err = core.load{ bpffs = bpffs, bpf_log_level = "off", count_translations = mode ~= "uncounted",
    events = mode == "events-off" and "off" or "all" }
  if not dp then
    io.stderr:write("connect_setup hook: core.load: ", tostring(err), "\n")
    os.exit(1)
  end

  local ok, failure = pcall(function()
    -- through the applier the agent uses: each frontend an owner of its own
    local applier = assert(core.applier(dp))
    for i = 0, n - 1 do
      local value = ffi.new("struct service_value")
      value.service_id = i + 1
      value.total_count = backends
      value.local_count = backends
      value.nat_mode = abi.nat_modes.service.ClusterIP
      local slots = {}
      for b = 1, backends do
        slots[b] = abi.backend_value(backend_address(b - 1), port, true)
      end
      local owner = "bench/" .. i
      assert(applier:apply(owner, { owner = owner, frontends = {
        { key = abi.service_key(vip(i), VIP_PORT, "TCP", "service"), value = value, backends = slots },
        { key = abi.service_key(vip(i), VIP_PORT, "UDP", "service"), value = value, backends = slots } } }))
    end
    applier:close()
    local attached, aerr = dp:attach(cgroup)
    assert(attached, "attach " .. cgroup .. ": " .. tostring(aerr))
  end)

  if ok then
    io.stdout:write("ready\n")
    io.stdout:flush()
    io.stdin:read("*a") -- until the benchmark closes our stdin (or dies)
  else
    io.stderr:write("connect_setup hook: ", tostring(failure), "\n")
  end
  local unpinned, uerr = dp:unpin()
  if not unpinned then
    io.stderr:write("connect_setup hook: unpin ", bpffs, ": ", tostring(uerr), "\n")
    os.exit(1)
  end
  os.exit(ok and 0 or 1)
end

-- The ring read as fast as events come, nothing decoded (see the header).
local function drain(bpffs)
  local core = require("balancing.core")
  local reader, err = core.open_events(bpffs)
  if not reader then
    io.stderr:write("connect_setup drain: ", tostring(err), "\n")
    os.exit(1)
  end
  io.stdout:write("ready\n")
  io.stdout:flush()
  while true do
    assert(reader:poll(100, 1)) -- waits for the fd (and takes one)
    repeat
      local taken = assert(reader:discard(65536))
    until taken == 0
  end
end

local command = arg[1]
local n = tonumber(arg[2])
if command == "vip" and n then
  print(vip(tonumber(arg[3])))
elseif command == "iptables" and n and tonumber(arg[3]) and tonumber(arg[4]) then
  iptables(n, tonumber(arg[3]), tonumber(arg[4]))
elseif command == "nft" and n and tonumber(arg[3]) and tonumber(arg[4]) and arg[5] then
  nft(n, tonumber(arg[3]), tonumber(arg[4]), arg[5])
elseif command == "hook" and n and tonumber(arg[3]) and tonumber(arg[4]) and arg[5] and arg[6]
  and (arg[7] == nil or arg[7] == "uncounted" or arg[7] == "events-off") then
  hook(n, tonumber(arg[3]), tonumber(arg[4]), arg[5], arg[6], arg[7])
elseif command == "drain" and arg[2] then
  drain(arg[2])
else
  io.stderr:write("usage: connect_setup.lua vip N I | iptables N PORT BACKENDS | nft N PORT BACKENDS PREFIX"
    .. " | hook N PORT BACKENDS BPFFS CGROUP [uncounted|events-off] | drain BPFFS\n")
  os.exit(2)
end
