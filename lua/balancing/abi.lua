-- The shared header bpf/balancing.h, declared to LuaJIT's FFI, and the
-- conversions between its network-order fields and the text users read.
--
-- The header is read at run time (the same text the BPF programs and the C
-- core compile), with its preprocessor lines dropped: the header keeps every
-- constant an enum so that nothing is lost. Where the header lives:
--   1. $BALANCING_HEADER, when set;
--   2. ../../bpf/balancing.h next to this file (the source tree);
--   3. /usr/local/share/balancing/balancing.h, /usr/share/balancing/balancing.h.
local ffi = require("ffi")
local bit = require("bit")
-- process-wide LuaJIT limits: every program of lua/balancing loads abi
require("balancing.jit_options")

local M = {}

local function this_dir()
  local source = debug.getinfo(1, "S").source
  return (source:sub(1, 1) == "@" and source:sub(2) or source):match("^(.*)/[^/]*$") or "."
end

local function candidate_paths()
  local paths = {}
  if os.getenv("BALANCING_HEADER") then
    paths[#paths + 1] = os.getenv("BALANCING_HEADER")
  end
  paths[#paths + 1] = this_dir() .. "/../../bpf/balancing.h"
  paths[#paths + 1] = "/usr/local/share/balancing/balancing.h"
  paths[#paths + 1] = "/usr/share/balancing/balancing.h"
  return paths
end

local function read_header()
  for _, path in ipairs(candidate_paths()) do
    local file = io.open(path, "r")
    if file then
      local text = file:read("*a")
      file:close()
      return text, path
    end
  end
  error("balancing.abi: cannot find bpf/balancing.h (tried " .. table.concat(candidate_paths(), ", ")
    .. "); set BALANCING_HEADER")
end

-- The header text as ffi.cdef accepts it: kernel integer types and
-- struct bpf_spin_lock declared, preprocessor lines dropped.
function M.cdef_text(header_text)
  local lines = {
    "typedef uint8_t __u8; typedef uint16_t __u16; typedef uint32_t __u32; typedef uint64_t __u64;",
    -- <linux/bpf.h>'s, which the C side includes
    "struct bpf_spin_lock { __u32 val; };",
  }
  for line in (header_text .. "\n"):gmatch("([^\n]*)\n") do
    if not line:match("^%s*#") then
      lines[#lines + 1] = line
    end
  end
  return table.concat(lines, "\n")
end

-- ffi.cdef may run only once per VM for a given struct; keep the result in a
-- field of the ffi module table so that a reloaded abi.lua does not redeclare.
if not ffi.balancing_abi_header_path then
  local text, path = read_header()
  ffi.cdef(M.cdef_text(text))
  ffi.balancing_abi_header_path = path
end
M.header_path = ffi.balancing_abi_header_path

M.C = ffi.C -- enum constants: abi.C.NAT_TYPE_SERVICE, ...

-- Byte order. x86_64 and arm64 are little-endian; the FFI tells us.
local little_endian = ffi.abi("le")

function M.htons(port)
  if little_endian then
    return bit.band(bit.bor(bit.lshift(bit.band(port, 0xff), 8), bit.rshift(port, 8)), 0xffff)
  end
  return port
end
M.ntohs = M.htons

-- Dotted IPv4 text is parsed byte by byte: the reconcile converts every
-- endpoint address of every Service, and a parser that makes no substrings or
-- tables keeps that loop inside LuaJIT's compiled traces.
local byte = string.byte
local DIGIT_0, DIGIT_9, DOT = 48, 57, 46

-- One octet starting at pos: its value and the position after it, or nil.
-- "0" is an octet; a leading zero ("01") is not, nor is a value over 255 (a
-- fourth digit is left for the caller, which then finds no dot).
local function octet(text, pos)
  local c = byte(text, pos)
  if c == nil or c < DIGIT_0 or c > DIGIT_9 then
    return nil
  end
  local value = c - DIGIT_0
  pos = pos + 1
  c = byte(text, pos)
  if value == 0 then
    if c ~= nil and c >= DIGIT_0 and c <= DIGIT_9 then
      return nil
    end
    return 0, pos
  end
  if c ~= nil and c >= DIGIT_0 and c <= DIGIT_9 then
    value = value * 10 + c - DIGIT_0
    pos = pos + 1
    c = byte(text, pos)
    if c ~= nil and c >= DIGIT_0 and c <= DIGIT_9 then
      value = value * 10 + c - DIGIT_0
      pos = pos + 1
      if value > 255 then
        return nil
      end
    end
  end
  return value, pos
end

-- The four octets of "a.b.c.d", or nil; read_octet is octet (strict) or
-- sloppy_octet (kube-proxy's reading), below.
local function octets(text, read_octet)
  local a, pos = read_octet(text, 1)
  if not a or byte(text, pos) ~= DOT then
    return nil
  end
  local b
  b, pos = read_octet(text, pos + 1)
  if not b or byte(text, pos) ~= DOT then
    return nil
  end
  local c
  c, pos = read_octet(text, pos + 1)
  if not c or byte(text, pos) ~= DOT then
    return nil
  end
  local d
  d, pos = read_octet(text, pos + 1)
  if not d or pos ~= #text + 1 then
    return nil
  end
  return a, b, c, d
end

-- "10.96.0.10" -> the u32 whose memory holds the bytes 10,96,0,10 (network
-- order), as a Lua number; nil, err for anything that is not dotted IPv4
-- (octets 0..255 without leading zeros).
function M.ipv4_to_u32(text)
  if type(text) ~= "string" then
    return nil, "not an IPv4 address: " .. tostring(text)
  end
  local a, b, c, d = octets(text, octet)
  if not a then
    return nil, "not an IPv4 address: " .. text
  end
  if little_endian then
    return a + b * 0x100 + c * 0x10000 + d * 0x1000000
  end
  return d + c * 0x100 + b * 0x10000 + a * 0x1000000
end

-- "10.96.0.10" -> 0x0A60000A: the address as a number in host order, which
-- sorts as addresses do; nil for text ipv4_to_u32 refuses.
function M.ipv4_order(text)
  if type(text) ~= "string" then
    return nil
  end
  local a, b, c, d = octets(text, octet)
  if not a then
    return nil
  end
  return ((a * 0x100 + b) * 0x100 + c) * 0x100 + d
end

-- Service and EndpointSlice addresses are read as kube-proxy reads them
-- (k8s.io/utils/net ParseIPSloppy, Go's parser before 1.17): an octet is any
-- run of decimal digits worth at most 255, leading zeros included and read
-- as decimal ("172.30.0.041" is 172.30.0.41, not octal).
local function sloppy_octet(text, pos)
  local c = byte(text, pos)
  if c == nil or c < DIGIT_0 or c > DIGIT_9 then
    return nil
  end
  local value = 0
  repeat
    value = value * 10 + c - DIGIT_0
    if value > 255 then
      return nil
    end
    pos = pos + 1
    c = byte(text, pos)
  until c == nil or c < DIGIT_0 or c > DIGIT_9
  return value, pos
end

-- ipv4_order for kube-proxy's reading of an address (sloppy_octet); nil for
-- text that is not dotted IPv4 even so.
function M.ipv4_sloppy_order(text)
  if type(text) ~= "string" then
    return nil
  end
  local a, b, c, d = octets(text, sloppy_octet)
  if not a then
    return nil
  end
  return ((a * 0x100 + b) * 0x100 + c) * 0x100 + d
end

-- ipv4_order's number -> its dotted text, the canonical form ("172.30.0.41").
function M.ipv4_order_to_text(order)
  return string.format("%d.%d.%d.%d", math.floor(order / 0x1000000), math.floor(order / 0x10000) % 0x100,
    math.floor(order / 0x100) % 0x100, order % 0x100)
end

-- ipv4_order's number -> the u32 ipv4_to_u32 gives for the same address
-- (no text parsed again for an address already read once).
function M.ipv4_order_to_u32(order)
  if little_endian then
    return bit.bswap(order) % 0x100000000
  end
  return order
end

function M.u32_to_ipv4(value)
  value = tonumber(value)
  local b0 = value % 0x100
  local b1 = math.floor(value / 0x100) % 0x100
  local b2 = math.floor(value / 0x10000) % 0x100
  local b3 = math.floor(value / 0x1000000) % 0x100
  if little_endian then
    return string.format("%d.%d.%d.%d", b0, b1, b2, b3)
  end
  return string.format("%d.%d.%d.%d", b3, b2, b1, b0)
end

local protocol_numbers = { TCP = ffi.C.BALANCING_PROTO_TCP, UDP = ffi.C.BALANCING_PROTO_UDP }
local protocol_names = { [ffi.C.BALANCING_PROTO_TCP] = "TCP", [ffi.C.BALANCING_PROTO_UDP] = "UDP" }

function M.protocol_number(name)
  return protocol_numbers[name]
end

function M.protocol_name(number)
  return protocol_names[tonumber(number)] or tostring(number)
end

-- The names of the header's enums, keyed by its constants (one source for
-- every number: balancing.h).
local C = ffi.C

-- enum nat_type <-> the frontend view's "type"
M.nat_types = {
  service = C.NAT_TYPE_SERVICE,
  localRedirect = C.NAT_TYPE_LOCAL_REDIRECT,
  balancing = C.NAT_TYPE_BALANCING,
}

-- enum nat_mode <-> the frontend view's "mode" (names are per type)
M.nat_modes = {
  service = {
    ClusterIP = C.NAT_MODE_CLUSTER_IP,
    NodePort = C.NAT_MODE_NODE_PORT,
    LoadBalancer = C.NAT_MODE_LOAD_BALANCER,
    ExternalIP = C.NAT_MODE_EXTERNAL_IP,
  },
  localRedirect = { service = C.NAT_MODE_REDIRECT_SERVICE, address = C.NAT_MODE_REDIRECT_ADDRESS },
  balancing = {
    podEndpoint = C.NAT_MODE_BALANCING_POD,
    hostPort = C.NAT_MODE_BALANCING_HOST_PORT,
    nodeProxy = C.NAT_MODE_BALANCING_NODE_PROXY,
    address = C.NAT_MODE_BALANCING_ADDRESS,
  },
}

-- number -> name, made from the tables above rather than written twice
M.nat_type_names = {}
for name, number in pairs(M.nat_types) do
  M.nat_type_names[number] = name
end
M.nat_mode_names = { [C.NAT_MODE_NONE] = "none" }
for _, modes in pairs(M.nat_modes) do
  for name, number in pairs(modes) do
    M.nat_mode_names[number] = name
  end
end

M.reason_names = {
  [C.REASON_OK] = "",
  [C.REASON_NO_BACKEND] = "no backend",
  [C.REASON_NO_LOCAL_BACKEND] = "no local backend",
  [C.REASON_BACKEND_MISSING] = "backend slot missing",
  [C.REASON_NAT_RECORD_FAILED] = "nat record not stored",
  [C.REASON_REDIRECT_LIMIT] = "redirect limit reached, sent untranslated",
}

-- Constructors for the map structs from readable fields. The ctypes are
-- looked up once: ffi.new with a declaration string parses it on every call
-- the interpreter makes.
local service_key_t = ffi.typeof("struct service_key")
local backend_value_t = ffi.typeof("struct backend_value")

function M.service_key(address, port, protocol, nat_type)
  local key = service_key_t()
  key.address = address == "*" and 0 or assert(M.ipv4_to_u32(address))
  key.port = M.htons(port)
  key.protocol = type(protocol) == "string" and protocol_numbers[protocol] or protocol
  key.nat_type = type(nat_type) == "string" and M.nat_types[nat_type] or nat_type
  return key
end

function M.backend_value(address, port, is_local)
  local value = backend_value_t()
  value.address = assert(M.ipv4_to_u32(address))
  value.port = M.htons(port)
  value.flags = is_local and ffi.C.BACKEND_FLAG_LOCAL or 0
  return value
end

return M
