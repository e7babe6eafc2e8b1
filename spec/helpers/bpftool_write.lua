-- Raw map writes with bpftool, a writer outside balancing.core, for the few
-- specs that need an entry the applier would never write: a deliberately
-- broken slot, a map_configure of another ABI version, a map the core does
-- not write yet (map_redirect_loop). balancing.core's map handles only read;
-- everything it writes goes through core.applier (or core.configure for
-- map_configure's settings). Test-only: nothing in lua/ or core/ uses this.
--
--   local bpftool_write = require("helpers.bpftool_write")
--   bpftool_write.update(dir .. "/map_backend", key, value)   -- cdata or strings
--   bpftool_write.delete(dir .. "/map_backend", key)
local ffi = require("ffi")

local M = {}

local function quote(text)
  return "'" .. tostring(text):gsub("'", "'\\''") .. "'"
end

local function bytes(data)
  if type(data) == "string" then
    return data
  end
  return ffi.string(data, ffi.sizeof(data))
end

local function hex(data)
  return (bytes(data):gsub(".", function(c)
    return string.format("%02x ", c:byte())
  end))
end

-- bpftool without the sanitizer runtime a BALANCING_SANITIZE=1 run preloads.
-- Its exit status is echoed and read back: LuaJIT's pipe:close() returns
-- true whatever the command's status (Lua 5.1), so a refused write (a full
-- map) would pass unseen.
local function bpftool(args)
  local pipe = assert(io.popen("unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; bpftool "
    .. args .. " 2>&1; echo \"bpftool-status:$?\"", "r"))
  local output = pipe:read("*a")
  pipe:close()
  local status = tonumber(output:match("bpftool%-status:(%d+)%s*$"))
  output = output:gsub("bpftool%-status:%d+%s*$", "")
  assert(status == 0, "bpftool " .. args .. ": " .. output .. " (status " .. tostring(status) .. ")")
  return output
end

-- Writes key → value into the map pinned at path (BPF_ANY).
function M.update(path, key, value)
  bpftool("map update pinned " .. quote(path) .. " key hex " .. hex(key) .. "value hex " .. hex(value))
end

-- Deletes key from the map pinned at path; fails the spec when it is absent.
function M.delete(path, key)
  bpftool("map delete pinned " .. quote(path) .. " key hex " .. hex(key))
end

return M
