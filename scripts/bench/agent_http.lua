-- HTTP for scripts/bench/agent through libcurl's easy interface (FFI): one
-- handle per peer keeps its connection (and TLS session) open, so a POST
-- every 50 ms costs no process start and no handshake, and the driver's time
-- stamps are taken right around the request.
--
--   local http = require("agent_http")
--   local client = http.new{ base = "https://127.0.0.1:PORT", ca = "ca.crt", token = "t" }
--   local code, body = client:get("/api/v1/services?limit=500")
--   local code = client:post("/_fake/objects", json_text)   -- body dropped
--   client:close()
local ffi = require("ffi")

local M = {}

ffi.cdef([[
typedef void CURL;
struct curl_slist;
void *curl_easy_init(void);
int curl_easy_setopt(void *curl, int option, ...);
int curl_easy_perform(void *curl);
int curl_easy_getinfo(void *curl, int info, ...);
void curl_easy_cleanup(void *curl);
const char *curl_easy_strerror(int code);
struct curl_slist *curl_slist_append(struct curl_slist *list, const char *text);
void curl_slist_free_all(struct curl_slist *list);
]])

local curl = ffi.load("libcurl.so.4")

local OPT = {
  WRITEDATA = 10001, URL = 10002, POSTFIELDS = 10015, HTTPHEADER = 10023, CAINFO = 10065,
  WRITEFUNCTION = 20011, POSTFIELDSIZE = 60, TIMEOUT_MS = 155, NOSIGNAL = 99, HTTPGET = 80, POST = 47,
  CUSTOMREQUEST = 10036, TCP_NODELAY = 121,
}
local INFO_RESPONSE_CODE = 0x200002

-- One write callback for every handle: the response of the request running
-- now goes to `sink` (a table of pieces) or nowhere.
local sink
local write_cb = ffi.cast("size_t (*)(char *, size_t, size_t, void *)", function(data, size, count)
  local n = size * count
  if sink then
    sink[#sink + 1] = ffi.string(data, n)
  end
  return n
end)

local Client = {}
Client.__index = Client

function M.new(options)
  local handle = curl.curl_easy_init()
  assert(handle ~= nil, "curl_easy_init failed")
  local self = setmetatable({ handle = handle, base = options.base, timeout_ms = options.timeout_ms or 30000 },
    Client)
  local headers = nil
  if options.token then
    headers = curl.curl_slist_append(headers, "Authorization: Bearer " .. options.token)
  end
  headers = curl.curl_slist_append(headers, "Content-Type: application/json")
  headers = curl.curl_slist_append(headers, "Expect:")
  self.headers = headers
  curl.curl_easy_setopt(handle, OPT.HTTPHEADER, headers)
  curl.curl_easy_setopt(handle, OPT.NOSIGNAL, ffi.new("long", 1))
  curl.curl_easy_setopt(handle, OPT.TCP_NODELAY, ffi.new("long", 1))
  curl.curl_easy_setopt(handle, OPT.WRITEFUNCTION, write_cb)
  if options.ca then
    self.ca = options.ca
    curl.curl_easy_setopt(handle, OPT.CAINFO, options.ca)
  end
  return self
end

local code_box = ffi.new("long[1]")

-- perform runs a C callback into Lua: never from compiled code.
local function perform(self, method, path, body, keep)
  local handle = self.handle
  curl.curl_easy_setopt(handle, OPT.URL, self.base .. path)
  curl.curl_easy_setopt(handle, OPT.TIMEOUT_MS, ffi.new("long", self.timeout_ms))
  if method == "GET" then
    curl.curl_easy_setopt(handle, OPT.HTTPGET, ffi.new("long", 1))
    curl.curl_easy_setopt(handle, OPT.CUSTOMREQUEST, ffi.cast("char *", nil))
  else
    curl.curl_easy_setopt(handle, OPT.POST, ffi.new("long", 1))
    curl.curl_easy_setopt(handle, OPT.POSTFIELDSIZE, ffi.new("long", #body))
    self.body = body -- kept alive while libcurl reads it
    curl.curl_easy_setopt(handle, OPT.POSTFIELDS, body)
    curl.curl_easy_setopt(handle, OPT.CUSTOMREQUEST, method == "POST" and ffi.cast("char *", nil) or method)
  end
  sink = keep and {} or nil
  local rc = curl.curl_easy_perform(handle)
  local pieces = sink
  sink = nil
  if rc ~= 0 then
    return nil, ffi.string(curl.curl_easy_strerror(rc))
  end
  curl.curl_easy_getinfo(handle, INFO_RESPONSE_CODE, code_box)
  return tonumber(code_box[0]), pieces and table.concat(pieces) or nil
end
jit.off(perform)

function Client:get(path)
  return perform(self, "GET", path, nil, true)
end

-- The response body is read and dropped unless keep.
function Client:post(path, body, keep)
  return perform(self, "POST", path, body, keep)
end

function Client:request(method, path, body, keep)
  return perform(self, method, path, body, keep)
end

function Client:close()
  if self.handle then
    curl.curl_easy_cleanup(self.handle)
    curl.curl_slist_free_all(self.headers)
    self.handle = nil
  end
end

return M
