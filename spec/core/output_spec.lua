-- The running agent's stdout (core/output.c) through its binding: whole
-- lines buffered while the reader stalls, written in exactly their order
-- across partial writes and EAGAIN, refused whole (and log lines counted)
-- when the buffer is full, never a busy wait. The reader here is a pipe of
-- one page that the spec drains when it chooses (the agent's stalled
-- reader end to end: spec/e2e/agent_output_stall_spec.lua).
local core = require("balancing.core")
local ffi = require("ffi")

for _, decl in ipairs({ "int pipe(int fds[2]);", "int fcntl(int fd, int cmd, ...);",
  "long read(int fd, void *buf, unsigned long count);", "int close(int fd);" }) do
  pcall(ffi.cdef, decl)
end
local F_GETFL, F_SETFL, F_SETPIPE_SZ, O_NONBLOCK = 3, 4, 1031, 2048
local PIPE_BYTES = 4096

-- A pipe of one page: read end non-blocking (the spec never waits), write
-- end as a process would get it, blocking.
local function small_pipe()
  local fds = ffi.new("int[2]")
  assert(ffi.C.pipe(fds) == 0, "pipe")
  assert(ffi.C.fcntl(fds[0], F_SETPIPE_SZ, ffi.new("int", PIPE_BYTES)) >= PIPE_BYTES, "F_SETPIPE_SZ")
  assert(ffi.C.fcntl(fds[0], F_SETFL, ffi.new("int", O_NONBLOCK)) == 0)
  return fds[0], fds[1]
end

-- What the pipe holds now (nothing waited for).
local function read_all(fd)
  local buf, parts = ffi.new("char[65536]"), {}
  while true do
    local n = tonumber(ffi.C.read(fd, buf, 65536))
    if n <= 0 then
      break
    end
    parts[#parts + 1] = ffi.string(buf, n)
  end
  return table.concat(parts)
end

-- Reads the pipe and pumps the output in turn until both are empty.
local function drain(out, fd)
  local parts = {}
  for _ = 1, 100000 do
    parts[#parts + 1] = read_all(fd)
    assert(out:pump())
    if out:stats().buffered == 0 then
      parts[#parts + 1] = read_all(fd)
      return table.concat(parts)
    end
  end
  error("the output never emptied")
end

local function numbered(i, width)
  local line = string.format("line %06d ", i)
  return line .. string.rep("x", (width or 61) - #line - 1) .. "\n"
end

describe("core.output", function()
  local r, w, out
  before_each(function()
    r, w = small_pipe()
  end)
  after_each(function()
    if out then
      out:close()
      out = nil
    end
    ffi.C.close(r)
    ffi.C.close(w)
  end)

  it("writes straight through while the reader keeps up", function()
    out = assert(core.output_open(w, 65536))
    assert.same({ 1, 0 }, { out:write(numbered(1)) })
    assert.equals(0, out:stats().buffered)
    assert.equals(numbered(1), read_all(r))
  end)

  it("keeps the bytes in order across partial writes and EAGAIN", function()
    out = assert(core.output_open(w, 65536))
    local sent, received = {}, {}
    -- 61-byte lines: the page fills, and every later write is buffered
    for i = 1, 1000 do
      sent[i] = numbered(i)
      if i % 3 == 0 then
        assert.is_true(out:log(sent[i]))
      else
        assert.same({ 1, 0 }, { out:write(sent[i]) })
      end
      if i % 97 == 0 then
        assert.is_true(out:stats().buffered > 0, "nothing waits at line " .. i)
        -- the reader takes the page now and then: the pipe has room while
        -- lines wait, and the next line must still go behind them
        received[#received + 1] = read_all(r)
      end
      if i % 89 == 0 then
        assert(out:pump()) -- (a page of the buffer, cut wherever the pipe says)
      end
    end
    assert.equals(0, out:stats().log_lines_dropped)
    -- the reader back, in small steps (each pump writes a partial page)
    received[#received + 1] = drain(out, r)
    assert.equals(table.concat(sent), table.concat(received))
  end)

  it("refuses a line that does not fit whole, counts log lines refused, and cuts none", function()
    out = assert(core.output_open(w, 200)) -- room for three 61-byte lines behind the pipe
    local taken = {}
    while out:stats().buffered == 0 do -- the pipe full first
      taken[#taken + 1] = numbered(#taken + 1)
      assert.same({ 1, 0 }, { out:write(taken[#taken]) })
    end
    local buffered = out:stats().buffered
    -- two more lines fit (the last byte count depends on where the page was cut)
    while out:stats().buffered + 61 <= 200 do
      taken[#taken + 1] = numbered(#taken + 1)
      assert.is_true(out:log(taken[#taken]))
    end
    assert.is_true(out:stats().buffered > buffered)

    assert.is_false(out:log(numbered(9999)))
    assert.is_false(out:log(numbered(9998)))
    assert.equals(2, out:stats().log_lines_dropped)
    -- several lines at once: the ones that fit taken, from the first that
    -- does not, the rest refused (and not counted as log lines: the caller's)
    local room = 200 - out:stats().buffered
    local short = string.rep("s", room - 1) .. "\n"
    assert.same({ 1, 2 }, { out:write(short .. numbered(9997) .. "z\n") })
    taken[#taken + 1] = short
    assert.equals(2, out:stats().log_lines_dropped)
    assert.equals(200, out:stats().buffered)
    assert.same({ 0, 1 }, { out:write("q\n") })

    local text = drain(out, r)
    assert.equals(table.concat(taken), text)
    assert.is_nil(text:find("999", 1, true), "a refused line was written")
  end)

  it("gives up a flush after its timeout when nobody reads, and puts the fd back as it was", function()
    out = assert(core.output_open(w, 65536))
    out:write(string.rep(numbered(1), 100)) -- more than the page
    assert.is_true(out:stats().buffered > 0)
    local started = os.clock()
    local ok, err = out:flush(100)
    assert.is_nil(ok)
    assert.matches("unavailable", err)
    assert.is_true(os.clock() - started < 0.1, "flush waited busily") -- (CPU time: poll sleeps)
    drain(out, r)
    assert.is_true(out:flush(0))
    assert.equals(O_NONBLOCK, bit.band(ffi.C.fcntl(w, F_GETFL), O_NONBLOCK))
    out:close()
    out = nil
    assert.equals(0, bit.band(ffi.C.fcntl(w, F_GETFL), O_NONBLOCK))
  end)
end)
