-- bpf_stats for the benchmarks, without the global sysctl.
--
-- Run time accounting (a program's run_time_ns and run_cnt) is switched on
-- with a BPF_ENABLE_STATS file descriptor held by this process: the kernel
-- switches it off again when the last such fd closes, so it ends with the
-- process whatever happens. The global kernel.bpf_stats_enabled sysctl is
-- never written: on a shared machine it would change every other user's
-- programs and, if this process died, stay on.
--
-- As a module (scripts/bench/redirect_loop_run.lua):
--
--   local bpf_stats = require("bpf_stats")
--   local stats = assert(bpf_stats.enable())    -- accounting on until stats:close()
--   local ns, runs = bpf_stats.prog_stats(id, "balancing_conn")  -- cumulative, uint64_t
--
-- As a command (scripts/bench/connect's bpf_stats pass):
--
--   luajit bpf_stats.lua ID[,ID...] -- COMMAND [ARG...]
--
-- switches accounting on, reads the programs' counters, runs COMMAND (its
-- output passes through), reads them again and prints one line per program:
--   bpf_stats id=ID run_time_ns=DELTA run_cnt=DELTA
-- Exits with COMMAND's failure if it failed (then no bpf_stats lines).

local ffi = require("ffi")

ffi.cdef [[
long syscall(long number, ...);
int close(int fd);
char *strerror(int errnum);
struct bench_bpf_attr_stats { uint32_t type; };
struct bench_bpf_attr_get_id { uint32_t id; uint32_t next_id; uint32_t open_flags; };
struct bench_bpf_attr_info { uint32_t bpf_fd; uint32_t info_len; uint64_t info; };
struct bench_bpf_prog_info {
  uint32_t type; uint32_t id; uint8_t tag[8];
  uint8_t skip1[64 - 16]; char name[16];
  uint8_t skip2[192 - 80]; uint64_t run_time_ns; uint64_t run_cnt;
  uint8_t rest[232 - 208];
};
]]

local M = {}

local SYS_BPF = ({ x64 = 321, arm64 = 280 })[ffi.arch] or error("unknown architecture " .. ffi.arch)
local BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD, BPF_ENABLE_STATS = 13, 15, 32
local BPF_STATS_RUN_TIME = 0
assert(ffi.offsetof("struct bench_bpf_prog_info", "run_time_ns") == 192)
assert(ffi.offsetof("struct bench_bpf_prog_info", "run_cnt") == 200)
assert(ffi.offsetof("struct bench_bpf_prog_info", "name") == 64)

local function bpf(cmd, attr)
  local fd = tonumber(ffi.C.syscall(SYS_BPF, ffi.cast("int", cmd), attr, ffi.cast("unsigned int", ffi.sizeof(attr))))
  if fd < 0 then
    return nil, ffi.string(ffi.C.strerror(ffi.errno()))
  end
  return fd
end

-- Accounting on for as long as the returned handle is open (or this process
-- lives): a handle with :close(), or nil and the error.
function M.enable()
  local fd, err = bpf(BPF_ENABLE_STATS, ffi.new("struct bench_bpf_attr_stats", { type = BPF_STATS_RUN_TIME }))
  if not fd then
    return nil, "BPF_ENABLE_STATS: " .. err .. " (the global sysctl is not an option on a shared machine)"
  end
  local handle = {}
  function handle.close()
    if fd then
      ffi.C.close(fd)
      fd = nil
    end
  end
  return handle
end

local prog_fds = {}

-- The cumulative run_time_ns and run_cnt (uint64_t cdata) of program ID;
-- with NAME_PREFIX, checks that the program's name starts with it. Raises
-- an error when the program cannot be read.
function M.prog_stats(id, name_prefix)
  local fd = prog_fds[id]
  if not fd then
    local err
    fd, err = bpf(BPF_PROG_GET_FD_BY_ID, ffi.new("struct bench_bpf_attr_get_id", { id = id }))
    if not fd then
      error("program " .. id .. ": " .. err, 2)
    end
    prog_fds[id] = fd
  end
  local buf = ffi.new("struct bench_bpf_prog_info[1]")
  local info = buf[0]
  local attr = ffi.new("struct bench_bpf_attr_info", { bpf_fd = fd, info_len = ffi.sizeof(info),
    info = ffi.cast("uint64_t", ffi.cast("uintptr_t", buf)) })
  local ok, err = bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
  if not ok then
    error("program " .. id .. " info: " .. err, 2)
  end
  -- the layout checked against what the kernel says of itself
  assert(info.id == id, "bpf_prog_info layout: id")
  if name_prefix and ffi.string(info.name):sub(1, #name_prefix) ~= name_prefix then
    error("program " .. id .. " is " .. ffi.string(info.name) .. ", not " .. name_prefix .. "*", 2)
  end
  return info.run_time_ns, info.run_cnt
end

local function quote(word)
  return "'" .. tostring(word):gsub("'", "'\\''") .. "'"
end

local function main(args)
  local ids = {}
  for id in (args[1] or ""):gmatch("[^,]+") do
    ids[#ids + 1] = tonumber(id)
    if not ids[#ids] then
      ids = {}
      break
    end
  end
  if #ids == 0 or args[2] ~= "--" or not args[3] then
    io.stderr:write("usage: luajit bpf_stats.lua ID[,ID...] -- COMMAND [ARG...]\n")
    os.exit(2)
  end
  local stats, err = M.enable()
  if not stats then
    io.stderr:write("bpf_stats: ", err, "\n")
    os.exit(1)
  end
  local before = {}
  for i, id in ipairs(ids) do
    before[i] = { M.prog_stats(id) }
  end
  local words = {}
  for i = 3, #args do
    words[#words + 1] = quote(args[i])
  end
  io.stdout:flush()
  local ok = os.execute(table.concat(words, " "))
  if ok ~= 0 and ok ~= true then
    stats.close()
    os.exit(1)
  end
  for i, id in ipairs(ids) do
    local t, c = M.prog_stats(id)
    io.stdout:write(string.format("bpf_stats id=%d run_time_ns=%s run_cnt=%s\n", id,
      (tostring(t - before[i][1]):gsub("ULL$", "")), (tostring(c - before[i][2]):gsub("ULL$", ""))))
  end
  stats.close()
end

-- run as a command, not required as a module
if arg and arg[0] and arg[0]:match("bpf_stats%.lua$") and not package.loaded["bpf_stats"] then
  main(arg)
end

return M
