-- The standalone source (`--manifests DIR`): the directory read again as a
-- whole whenever it changes (the C side watches it with inotify — files
-- added, changed, removed, editors' rename-replace, a ConfigMap's symlink
-- swap — and calls sync once per burst), and the store made equal to it.
--
--   local dir = manifest_source.new(store, "/etc/balancing/manifests")
--   local report, err = dir:sync()
--   -- report = { files, objects, upserted, deleted, problems = { {file, index, message} } }
--
-- Bad input never loses other state: a file that no longer parses keeps the
-- objects it gave when it last did (and says so, in problems and the log),
-- and a directory that cannot be read (being swapped, gone) changes nothing.
-- A file removed takes its objects with it. Objects are trimmed as from the
-- API server; kinds the agent does not read are ignored.
local log = require("balancing.log")
local manifests = require("balancing.manifests")
local store_module = require("balancing.store")
local trim = require("balancing.trim")

local M = {}

local Source = {}
Source.__index = Source

function M.new(store, dir)
  return setmetatable({ store = store, dir = dir, by_file = {}, texts = {} }, Source)
end

local function relative(dir, path)
  local prefix = dir:gsub("/+$", "") .. "/"
  if path:sub(1, #prefix) == prefix then
    return path:sub(#prefix + 1)
  end
  return path
end

-- sync() → report | nil, err.
function Source:sync()
  local paths, err = manifests.files(self.dir)
  if not paths then
    log.warn("manifest directory not read; nothing changed", { error = err })
    return nil, err
  end
  local report = { files = #paths, objects = 0, upserted = 0, deleted = 0, problems = {} }
  local by_file, texts = {}, {}
  for _, path in ipairs(paths) do
    local text, read_err = manifests.read_text(path)
    local objects, problems
    if text and text == self.texts[path] then
      -- unchanged: the very objects the store holds, which resync skips
      objects, problems = self.by_file[path], {}
    elseif text then
      objects, problems = manifests.parse(path, text)
    else
      objects, problems = {}, { { message = "cannot read: " .. tostring(read_err) } }
    end
    texts[path] = text
    local name = relative(self.dir, path)
    if #problems > 0 then
      for _, p in ipairs(problems) do
        report.problems[#report.problems + 1] = { file = name, index = p.index, message = p.message }
        log.warn("manifest not read", { file = name, index = p.index, error = tostring(p.message) })
      end
      -- what the file gave when it last parsed stays, rather than half of it
      objects = self.by_file[path] or objects
    elseif objects ~= self.by_file[path] then
      for i, obj in ipairs(objects) do
        objects[i] = trim.object(obj)
      end
    end
    by_file[path] = objects
  end
  self.by_file, self.texts = by_file, texts

  local by_kind = {}
  for _, kind in ipairs(store_module.KINDS) do
    by_kind[kind] = {}
  end
  for _, path in ipairs(paths) do
    for _, obj in ipairs(by_file[path]) do
      local list = type(obj) == "table" and by_kind[obj.kind]
      if list then
        list[#list + 1] = obj
        report.objects = report.objects + 1
      end
    end
  end
  for _, kind in ipairs(store_module.KINDS) do
    local result = self.store:resync(kind, by_kind[kind])
    report.upserted = report.upserted + result.upserted
    report.deleted = report.deleted + result.deleted
    for _, refused in ipairs(result.refused) do
      report.problems[#report.problems + 1] = { message = tostring(refused.err) }
      log.warn("object refused", { kind = kind, error = tostring(refused.err) })
    end
  end
  return report
end

M.Source = Source

return M
