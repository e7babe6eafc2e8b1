-- Reading a directory of manifests (standalone mode and `plan --manifests`).
--
--   local objects, problems = manifests.read_dir("/etc/balancing/manifests")
--
-- `*.json`, `*.yaml` and `*.yml` files directly in the directory (not in
-- subdirectories), in name order. A file holds one object, a `List` (its
-- `items`, each kept with its own kind), or — YAML — several documents.
-- Empty and null YAML documents are skipped. What cannot be parsed becomes a
-- problem `{ file = path, index = n | nil, message = ... }` (index: the YAML
-- document in the file, counting from 1; nil for a JSON file or a file that
-- does not parse at all) and everything else is still read. Hidden files
-- (a leading ".", e.g. the `..data` entries of a mounted ConfigMap) are
-- skipped.
--
-- Objects look the same whichever format they came in: as lua-cjson decodes
-- JSON. A YAML null (`~`, `null`, an empty value) becomes cjson.null, exactly
-- as a JSON null does, so consumers have one "absent" to test for.
local cjson = require("cjson")

local M = {}

M.EXTENSIONS = { json = true, yaml = true, yml = true }

local lyaml -- loaded on first use: JSON-only directories do not need it

local function load_yaml(text)
  if not lyaml then
    local ok, module = pcall(require, "lyaml")
    if not ok then
      return nil, "YAML support (lyaml) is not installed: " .. tostring(module)
    end
    lyaml = module
  end
  local ok, documents = pcall(lyaml.load, text, { all = true })
  if not ok then
    return nil, tostring(documents)
  end
  return documents
end

-- lyaml's null is a sentinel table; its maps and sequences are plain tables.
local function normalise(value)
  if lyaml and value == lyaml.null then
    return cjson.null
  end
  if type(value) ~= "table" then
    return value
  end
  local out = {}
  for key, item in pairs(value) do
    out[key] = normalise(item)
  end
  return out
end

local function is_null(value)
  return value == nil or value == cjson.null or (lyaml ~= nil and value == lyaml.null)
end

local function problem(problems, file, index, message)
  problems[#problems + 1] = { file = file, index = index, message = message }
end

-- Check one top-level document and add it (or its List items) to objects.
local function add_document(objects, problems, file, index, doc)
  if type(doc) ~= "table" then
    problem(problems, file, index, string.format("not an object but %s", type(doc)))
    return
  end
  local kind = doc.kind
  if kind == "List" or (type(kind) == "string" and kind:match("List$") and doc.items ~= nil) then
    local items = doc.items
    if is_null(items) then
      return
    end
    if type(items) ~= "table" then
      problem(problems, file, index, "items: not a list")
      return
    end
    -- A typed list from the API server (ServiceList) leaves the kind off its
    -- items; `kubectl get -o yaml` writes a List whose items keep theirs.
    local item_kind = type(kind) == "string" and kind:match("^(.+)List$") or nil
    for i, item in ipairs(items) do
      if type(item) == "table" and is_null(item.kind) and item_kind then
        item.kind = item_kind
      end
      if type(item) == "table" and not is_null(item.kind) then
        objects[#objects + 1] = item
      else
        problem(problems, file, index, string.format("items[%d]: not an object with a kind", i))
      end
    end
    return
  end
  if is_null(kind) then
    if next(doc) ~= nil and #doc > 0 then
      problem(problems, file, index, "not an object but a list")
    else
      local name = type(doc.metadata) == "table" and doc.metadata.name
      problem(problems, file, index, "kind is missing"
        .. (type(name) == "string" and string.format(" (metadata.name %q)", name) or ""))
    end
    return
  end
  objects[#objects + 1] = doc
end

-- The documents of a YAML stream as separate texts: a "---" line at column 0
-- starts a document (YAML forbids it inside any scalar, so the split is
-- exact). Text before the first marker is a document unless it is only
-- comments and blank lines, as the YAML parser counts them.
local function split_documents(text)
  local chunks, current, first_line = {}, {}, 1
  local function flush(force, next_line)
    local chunk = table.concat(current, "\n")
    local meaningful = (chunk:gsub("#[^\n]*", "")):match("%S")
    if force or meaningful then
      chunks[#chunks + 1] = { text = chunk, first_line = first_line }
    end
    current, first_line = {}, next_line
  end
  local started, number = false, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    number = number + 1
    if line:match("^%-%-%-%s") or line:match("^%-%-%-$") then
      flush(started, number)
      started = true
    end
    current[#current + 1] = line
  end
  flush(started)
  return chunks
end

local function read_file(path)
  local file, err = io.open(path, "rb")
  if not file then
    return nil, err
  end
  local text, read_err = file:read("*a")
  file:close()
  if not text then
    return nil, read_err
  end
  return text
end

-- list_dir(dir) → sorted file names, or nil, reason. LuaJIT has no directory
-- API of its own: use lfs when it is installed, else the FFI (opendir).
local function list_dir(dir)
  local ok, lfs = pcall(require, "lfs")
  if ok then
    local names = {}
    local iter_ok, iter, state = pcall(lfs.dir, dir)
    if not iter_ok then
      -- lfs says "cannot open DIR: reason"; keep the reason.
      local message, prefix = tostring(iter), "cannot open " .. dir .. ": "
      if message:sub(1, #prefix) == prefix then
        message = message:sub(#prefix + 1)
      end
      return nil, message
    end
    for name in iter, state do
      names[#names + 1] = name
    end
    table.sort(names)
    return names
  end
  local ffi = require("ffi")
  pcall(ffi.cdef, [[
    typedef struct balancing_dir balancing_dir;
    balancing_dir *opendir(const char *name);
    int closedir(balancing_dir *dirp);
    char *strerror(int errnum);
  ]])
  pcall(ffi.cdef, "struct balancing_dirent_head { unsigned long d_ino; long d_off; unsigned short d_reclen; "
    .. "unsigned char d_type; char d_name[256]; };")
  pcall(ffi.cdef, "struct balancing_dirent_head *readdir(balancing_dir *dirp);")
  local handle = ffi.C.opendir(dir)
  if handle == nil then
    return nil, ffi.string(ffi.C.strerror(ffi.errno()))
  end
  local names = {}
  while true do
    local entry = ffi.C.readdir(handle)
    if entry == nil then
      break
    end
    names[#names + 1] = ffi.string(entry.d_name)
  end
  ffi.C.closedir(handle)
  table.sort(names)
  return names
end

local function is_directory(path)
  local file = io.open(path, "rb")
  if not file then
    return false
  end
  -- Reading a directory fails with EISDIR where opening it succeeded.
  local _, _, code = file:read(1)
  file:close()
  return code == 21
end

-- read_file(path) → objects, problems: one file, whatever its extension says.
function M.read_file(path)
  local text, err = read_file(path)
  if not text then
    local problems = {}
    problem(problems, path, nil, "cannot read: " .. tostring(err))
    return {}, problems
  end
  return M.parse(path, text)
end

-- read_text(path) → the file's text | nil, err (for a caller that parses
-- only what changed).
M.read_text = read_file

-- parse(path, text) → objects, problems: a file's text, by the extension of
-- path.
function M.parse(path, text)
  local objects, problems = {}, {}
  local extension = path:match("%.([^./]+)$")
  if extension == "json" then
    local ok, doc = pcall(cjson.decode, text)
    if not ok then
      problem(problems, path, nil, "not valid JSON: " .. tostring(doc))
    else
      add_document(objects, problems, path, nil, doc)
    end
    return objects, problems
  end
  local documents, yaml_err = load_yaml(text)
  if documents then
    for index, doc in ipairs(documents) do
      if not is_null(doc) then
        add_document(objects, problems, path, index, normalise(doc))
      end
    end
    return objects, problems
  end
  local chunks = split_documents(text)
  if #chunks <= 1 then
    problem(problems, path, nil, "not valid YAML: " .. tostring(yaml_err))
    return objects, problems
  end
  -- One document does not parse: parse them one by one, so that the problem
  -- names that document and the others are still read.
  for index, chunk in ipairs(chunks) do
    local docs, doc_err = load_yaml(chunk.text)
    if not docs then
      -- lyaml says "line:column: reason", counted in the document's text.
      local line, rest = tostring(doc_err):match("^(%d+):(.*)$")
      if line then
        doc_err = tostring(tonumber(line) + chunk.first_line - 1) .. ":" .. rest
      end
      problem(problems, path, index, "not valid YAML: " .. tostring(doc_err))
    elseif not is_null(docs[1]) then
      add_document(objects, problems, path, index, normalise(docs[1]))
    end
  end
  return objects, problems
end

-- files(dir) → the paths of the manifest files in dir, in name order | nil,
-- "manifest directory DIR: reason".
function M.files(dir)
  local names, err = list_dir(dir)
  if not names then
    return nil, string.format("manifest directory %s: %s", dir, err)
  end
  local paths = {}
  for _, name in ipairs(names) do
    local extension = name:match("%.([^.]+)$")
    local path = dir:gsub("/+$", "") .. "/" .. name
    if name:sub(1, 1) ~= "." and extension and M.EXTENSIONS[extension] and not is_directory(path) then
      paths[#paths + 1] = path
    end
  end
  return paths
end

-- read_dir(dir) → objects, problems | nil, "manifest directory DIR: reason".
function M.read_dir(dir)
  local paths, err = M.files(dir)
  if not paths then
    return nil, err
  end
  local objects, problems = {}, {}
  for _, path in ipairs(paths) do
    local file_objects, file_problems = M.read_file(path)
    for _, obj in ipairs(file_objects) do
      objects[#objects + 1] = obj
    end
    for _, p in ipairs(file_problems) do
      problems[#problems + 1] = p
    end
  end
  return objects, problems
end

return M
