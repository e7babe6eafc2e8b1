-- The frontend view of CONTRACTS.md, built from hand-made entries (the same
-- shape reconcile/*.desired returns), independent of any reconcile module.
local ffi = require("ffi")
local cjson = require("cjson")
local abi = require("balancing.abi")
local frontends = require("balancing.frontends")
local frontend_view = require("helpers.frontend_view")

local function value(fields)
  local v = ffi.new("struct service_value")
  v.service_id = fields.id
  v.total_count = fields.total or 0
  v.local_count = fields["local"] or 0
  v.affinity_seconds = fields.affinity or 0
  v.nat_mode = fields.mode
  v.flags = fields.local_only and abi.C.SERVICE_FLAG_LOCAL_ONLY or 0
  return v
end

local function frontend(address, port, protocol, nat_type, fields, backends)
  return { key = abi.service_key(address, port, protocol, nat_type), value = value(fields), backends = backends or {} }
end

-- A registry stand-in with the one method the view uses.
local function fake_ids(map)
  return {
    lookup = function(_, id)
      return map[id]
    end,
  }
end

local ids = fake_ids({
  [0x80000010] = { kind = "Service", namespace = "kube-system", name = "kube-dns" },
  [0x80000020] = { kind = "Service", namespace = "default", name = "web" },
  [101] = { kind = "LocalRedirectPolicy", name = "node-local-dns" },
  [202] = { kind = "BalancingPolicy", name = "dns-global" },
})

local dns_service = {
  owner = "service/kube-system/kube-dns",
  frontends = {
    frontend("10.96.0.10", 53, "UDP", "service", { id = 0x80000010, total = 2, ["local"] = 1, mode = 1 }, {
      abi.backend_value("10.244.1.5", 5353, true),
      abi.backend_value("10.244.2.5", 5353, false),
    }),
    frontend("10.96.0.10", 53, "TCP", "service", { id = 0x80000010, total = 0, mode = 1 }),
  },
}
local dns_redirect = {
  owner = "localRedirect/node-local-dns",
  frontends = {
    frontend("10.96.0.10", 53, "UDP", "localRedirect", { id = 101, total = 1, ["local"] = 1, mode = 5 }, {
      abi.backend_value("10.244.1.9", 53, true),
    }),
  },
}
local dns_balancing = {
  owner = "balancing/dns-global",
  frontends = {
    frontend("10.96.0.10", 53, "UDP", "balancing", { id = 202, total = 1, mode = 10 }, {
      abi.backend_value("192.168.7.7", 53, false),
    }),
  },
}
local web = {
  owner = "service/default/web",
  frontends = {
    frontend("*", 30080, "TCP", "service", { id = 0x80000020, total = 3, ["local"] = 1, mode = 2, local_only = true,
      affinity = 10800 }, {
      abi.backend_value("10.244.1.20", 8080, true),
      abi.backend_value("10.244.2.20", 8080, false),
      abi.backend_value("10.244.3.20", 8080, false),
    }),
    frontend("10.96.100.1", 80, "TCP", "service", { id = 0x80000020, total = 3, ["local"] = 1, mode = 1,
      affinity = 10800 }, {
      abi.backend_value("10.244.1.20", 8080, true),
      abi.backend_value("10.244.2.20", 8080, false),
      abi.backend_value("10.244.3.20", 8080, false),
    }),
  },
}

describe("frontends.from_entries", function()
  local view = frontends.from_entries({ dns_service, web, dns_balancing, dns_redirect }, ids)

  local function find(address, port, protocol, type_name)
    return frontend_view.find(view, address, port, protocol, type_name)
  end

  it("gives one element per programmed entry, shadowed Service entries included", function()
    assert.equals(6, #view)
    assert.is_table(find("10.96.0.10", 53, "UDP", "service"))
    assert.is_table(find("10.96.0.10", 53, "UDP", "localRedirect"))
    assert.is_table(find("10.96.0.10", 53, "UDP", "balancing"))
  end)

  it("decodes the key: dotted address, host-order port, protocol and type names", function()
    local f = find("10.96.0.10", 53, "TCP", "service")
    assert.same({ address = "10.96.0.10", port = 53, protocol = "TCP", type = "service", mode = "ClusterIP",
      owner = "kube-system/kube-dns", id = 0x80000010, affinitySeconds = 0, localOnly = false, backends = {} }, f)
  end)

  it("writes a NodePort frontend with the address \"*\"", function()
    local f = find("*", 30080, "TCP", "service")
    assert.equals("NodePort", f.mode)
  end)

  it("names a Service owner namespace/name and a policy owner by its name", function()
    assert.equals("default/web", find("10.96.100.1", 80, "TCP", "service").owner)
    assert.equals("node-local-dns", find("10.96.0.10", 53, "UDP", "localRedirect").owner)
    assert.equals("dns-global", find("10.96.0.10", 53, "UDP", "balancing").owner)
  end)

  it("names the modes of each type", function()
    assert.equals("service", find("10.96.0.10", 53, "UDP", "localRedirect").mode)
    assert.equals("address", find("10.96.0.10", 53, "UDP", "balancing").mode)
  end)

  it("falls back to the entries' owner key for an ID the registry does not know", function()
    local v = frontends.from_entries({ dns_redirect, web }, fake_ids({}))
    assert.equals("node-local-dns", v[2].owner)
    assert.equals("default/web", v[1].owner)
  end)

  it("lists backends in slot order with their local flag", function()
    assert.same({
      { address = "10.244.1.20", port = 8080, ["local"] = true },
      { address = "10.244.2.20", port = 8080, ["local"] = false },
      { address = "10.244.3.20", port = 8080, ["local"] = false },
    }, find("10.96.100.1", 80, "TCP", "service").backends)
  end)

  it("lists only the first local_count backends of a localOnly frontend", function()
    local f = find("*", 30080, "TCP", "service")
    assert.is_true(f.localOnly)
    assert.same({ { address = "10.244.1.20", port = 8080, ["local"] = true } }, f.backends)
  end)

  it("lists no slot at or beyond total_count", function()
    local entries = { owner = "service/default/web", frontends = {
      frontend("10.96.100.1", 80, "TCP", "service", { id = 0x80000020, total = 1, mode = 1 }, {
        abi.backend_value("10.244.1.20", 8080, true), abi.backend_value("10.244.2.20", 8080, false) }),
    } }
    assert.equals(1, #frontends.from_entries({ entries }, ids)[1].backends)
  end)

  it("carries the session affinity timeout", function()
    assert.equals(10800, find("10.96.100.1", 80, "TCP", "service").affinitySeconds)
  end)

  it("sorts by address, port, protocol, then LocalRedirect, Balancing, Service", function()
    local order = {}
    for i, f in ipairs(view) do
      order[i] = table.concat({ f.address, f.port, f.protocol, f.type }, " ")
    end
    assert.same({
      "* 30080 TCP service",
      "10.96.0.10 53 TCP service",
      "10.96.0.10 53 UDP localRedirect",
      "10.96.0.10 53 UDP balancing",
      "10.96.0.10 53 UDP service",
      "10.96.100.1 80 TCP service",
    }, order)
  end)

  it("sorts addresses by number, not by text", function()
    local list = {}
    for i, address in ipairs({ "10.0.0.10", "9.0.0.1", "10.0.0.9" }) do
      list[i] = { owner = "balancing/p" .. i, frontends = {
        frontend(address, 80, "TCP", "balancing", { id = i, mode = 10 }) } }
    end
    local v = frontends.from_entries(list, nil)
    assert.same({ "9.0.0.1", "10.0.0.9", "10.0.0.10" }, { v[1].address, v[2].address, v[3].address })
  end)

  it("gives the same view whatever order the owners come in", function()
    local other = frontends.from_entries({ dns_redirect, dns_balancing, web, dns_service }, ids)
    assert.equals(frontends.encode(frontends.document(view, {})), frontends.encode(frontends.document(other, {})))
  end)
end)

describe("frontends.document and encode", function()
  it("encodes empty frontends and rejected as JSON arrays", function()
    local text = frontends.encode(frontends.document({}, {}))
    assert.matches('"frontends": %[%]', text)
    assert.matches('"rejected": %[%]', text)
    local decoded = cjson.decode(text)
    assert.same({}, decoded.frontends)
  end)

  it("encodes a backend-less frontend with \"backends\": []", function()
    local view = frontends.from_entries({ dns_service }, ids)
    assert.matches('"port": 53, "protocol": "TCP".-"backends": %[%]', frontends.encode(frontends.document(view, {})))
  end)

  it("writes keys in the order of CONTRACTS.md and parses back to the same view", function()
    local view = frontends.from_entries({ dns_service, web }, ids)
    local text = frontends.encode(frontends.document(view, {}))
    local line
    for l in text:gmatch("[^\n]+") do
      if l:find('"address": "10.96.0.10", "port": 53, "protocol": "UDP"', 1, true) then
        line = l:match("^%s*(.-),?$")
      end
    end
    assert.equals('{"address": "10.96.0.10", "port": 53, "protocol": "UDP", "type": "service", "mode": "ClusterIP", '
      .. '"owner": "kube-system/kube-dns", "id": 2147483664, "affinitySeconds": 0, "localOnly": false, '
      .. '"backends": [{"address": "10.244.1.5", "port": 5353, "local": true}, '
      .. '{"address": "10.244.2.5", "port": 5353, "local": false}]}', line)
    local decoded = cjson.decode(text)
    assert.equals(#view, #decoded.frontends)
    for i, f in ipairs(view) do
      assert.same(f, decoded.frontends[i])
    end
  end)

  it("sorts rejections and drops duplicates", function()
    local doc = frontends.document({}, {
      { kind = "LocalRedirectPolicy", name = "b", reason = "lost to a" },
      { kind = "BalancingPolicy", name = "z", reason = "spec.frontend: both matchers" },
      { kind = "LocalRedirectPolicy", name = "b", reason = "lost to a" },
    })
    assert.same({
      { kind = "BalancingPolicy", name = "z", reason = "spec.frontend: both matchers" },
      { kind = "LocalRedirectPolicy", name = "b", reason = "lost to a" },
    }, doc.rejected)
  end)

  it("does not escape slashes in names", function()
    assert.equals('{\n  "owner": "default/web"\n}', frontends.encode({ owner = "default/web" }))
  end)

  it("encodes IDs above 2^31 as whole numbers", function()
    assert.equals("[\n  4294967295\n]", frontends.encode(frontends.array({ 4294967295 })))
  end)
end)

describe("frontends.render_table", function()
  local view = frontends.from_entries({ dns_service, web, dns_redirect }, ids)
  local text = frontends.render_table(view)
  local lines = {}
  for line in text:gmatch("([^\n]*)\n") do
    lines[#lines + 1] = line
  end

  it("has the columns TYPE MODE ADDRESS PORT PROTO OWNER ID AFFINITY LOCAL-ONLY BACKENDS", function()
    assert.same({ "TYPE", "MODE", "ADDRESS", "PORT", "PROTO", "OWNER", "ID", "AFFINITY", "LOCAL-ONLY", "BACKENDS" },
      (function()
        local words = {}
        for w in lines[1]:gmatch("%S+") do
          words[#words + 1] = w
        end
        return words
      end)())
  end)

  it("has one line per frontend, columns aligned", function()
    assert.equals(#view + 1, #lines)
    local column = lines[1]:find("OWNER", 1, true)
    for i = 2, #lines do
      assert.is_truthy(lines[i]:sub(column - 2, column - 1) == "  ", lines[i])
      assert.is_not.equals(" ", lines[i]:sub(column, column))
    end
  end)

  it("writes backends as address:port, * for a local one, - for none", function()
    assert.matches("10.244.1.5:5353%*,10.244.2.5:5353$", lines[5])
    assert.matches("%s%-$", lines[3])
  end)

  it("writes affinity in seconds and local-only as yes/no", function()
    assert.matches("^service%s+NodePort%s+%*%s+30080%s+TCP%s+default/web%s+2147483680%s+10800s%s+yes"
      .. "%s+10.244.1.20:8080%*$", lines[2])
  end)

  it("says so when there is no frontend", function()
    assert.matches("%(no frontends%)", frontends.render_table({}))
  end)

  it("lists rejected objects under a heading", function()
    local r = frontends.render_rejected({ { kind = "BalancingPolicy", name = "bad", reason = "spec.frontend: x" } })
    assert.matches("^rejected:\nKIND%s+NAME%s+REASON\nBalancingPolicy%s+bad%s+spec.frontend: x\n$", r)
    assert.equals("rejected: none\n", frontends.render_rejected({}))
  end)
end)

-- The exact bytes of the encoder, which the checked-in expected plans rely
-- on: layout, key order, numbers and escapes.
describe("frontends.encode, byte for byte", function()
  it("writes the document and its arrays one member per line, each element on one line", function()
    local doc = frontends.document({ { address = "10.96.0.10", port = 53, protocol = "UDP", type = "service",
      mode = "ClusterIP", owner = "kube-system/kube-dns", id = 7, affinitySeconds = 0, localOnly = false,
      backends = frontends.array({ { address = "10.244.1.5", port = 5353, ["local"] = true } }) } },
      { { kind = "File", name = "bad.yaml", reason = "document 2: x" } })
    assert.equals('{\n  "frontends": [\n'
      .. '    {"address": "10.96.0.10", "port": 53, "protocol": "UDP", "type": "service", "mode": "ClusterIP", '
      .. '"owner": "kube-system/kube-dns", "id": 7, "affinitySeconds": 0, "localOnly": false, '
      .. '"backends": [{"address": "10.244.1.5", "port": 5353, "local": true}]}\n'
      .. '  ],\n  "rejected": [\n'
      .. '    {"kind": "File", "name": "bad.yaml", "reason": "document 2: x"}\n'
      .. '  ]\n}', frontends.encode(doc))
  end)

  it("writes keys of CONTRACTS.md first, in its order, then any other key in byte order", function()
    assert.equals('{\n  "address": "x",\n  "Alpha": 2,\n  "nested": {\n    "a": {},\n    "b": [1, 2]\n  },\n'
      .. '  "zeta": 1\n}', frontends.encode({ zeta = 1, address = "x", Alpha = 2, nested = { b = { 1, 2 }, a = {} } }))
  end)

  it("writes whole numbers without a fraction, others with 17 digits, cdata as its value, cjson.null as null",
    function()
      assert.equals("[\n  1.5,\n  0.10000000000000001,\n  -3,\n  9007199254740992,\n  0,\n  9007199254740991,\n"
        .. "  5,\n  null\n]", frontends.encode(frontends.array({ 1.5, 0.1, -3, 2 ^ 53, -0.0, 2 ^ 53 - 1,
        ffi.new("uint64_t", 5), cjson.null })))
    end)

  it("escapes strings as lua-cjson does, but not the slash", function()
    assert.equals('{\n  "s": "q\\"b\\\\c\\u0001\\u001f\\u007f\195\169/\\u0000\\t\\n"\n}',
      frontends.encode({ s = "q\"b\\c\1\31\127\195\169/\0\t\n" }))
    assert.equals('{\n  "a\\"/b": "\\\\/"\n}', frontends.encode({ ['a"/b'] = "\\/" }))
  end)

  it("refuses what JSON cannot say", function()
    assert.has_error(function() frontends.encode({ x = 0 / 0 }) end)
    assert.has_error(function() frontends.encode({ x = math.huge }) end)
    assert.has_error(function() frontends.encode({ x = print }) end)
    assert.has_error(function() frontends.encode({ [true] = 1 }) end)
  end)
end)
