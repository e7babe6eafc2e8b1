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

function M.write_file(path, text)
  assert(os.execute("mkdir -p " .. M.quote(path:match("^(.*)/[^/]*$"))) == 0)
  local file = assert(io.open(path, "w"))
  file:write(text)
  file:close()
end

function M.remove_dir(dir)
  os.execute("rm -rf " .. M.quote(dir))
end

return M
