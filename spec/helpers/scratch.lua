-- Scratch files for specs: a fresh temporary directory, files written into
-- it (parent directories made as needed), and its removal. Paths go to the
-- shell quoted, so any name works.
--
--   local scratch = require("helpers.scratch")
--   local dir = scratch.temp_dir()
--   scratch.write_file(dir .. "/manifests/web.yaml", text)
--   scratch.remove_dir(dir)
local M = {}

-- text as one shell word
function M.quote(text)
  return "'" .. tostring(text):gsub("'", "'\\''") .. "'"
end

function M.temp_dir()
  local handle = assert(io.popen("mktemp -d"))
  local dir = handle:read("*l")
  handle:close()
  return dir
end

-- The whole file as text, or nil when it cannot be read.
function M.read_file(path)
  local file = io.open(path, "rb")
  if not file then
    return nil
  end
  local text = file:read("*a")
  file:close()
  return text
end

function M.write_file(path, text)
  assert(os.execute("mkdir -p " .. M.quote(path:match("^(.*)/[^/]*$"))) == 0)
  local file = assert(io.open(path, "w"))
  file:write(text)
  file:close()
end

-- run(command) → exit status, stdout, stderr of a shell command line (its
-- words already quoted), without the sanitizer preload of the spec runner.
function M.run(command)
  local dir = M.temp_dir()
  local handle = assert(io.popen("env -u LD_PRELOAD " .. command .. " >" .. M.quote(dir .. "/out") .. " 2>"
    .. M.quote(dir .. "/err") .. "; echo $?"))
  local status = tonumber(handle:read("*l"))
  handle:close()
  local function slurp(name)
    local file = assert(io.open(dir .. "/" .. name))
    local text = file:read("*a")
    file:close()
    return text
  end
  local stdout, stderr = slurp("out"), slurp("err")
  M.remove_dir(dir)
  return status, stdout, stderr
end

function M.remove_dir(dir)
  os.execute("rm -rf " .. M.quote(dir))
end

return M
