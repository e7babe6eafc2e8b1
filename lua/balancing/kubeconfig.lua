-- Where the API server is and how to authenticate to it, for the agent's
-- Kubernetes client (C, libcurl): from a kubeconfig file (an agent outside
-- the cluster) or from the pod's service account (in-cluster).
--
--   local access, err = kubeconfig.from_file("/root/.kube/config")
--   local access, err = kubeconfig.in_cluster(os.getenv)
--
-- access = {
--   server = "https://10.0.0.1:6443",
--   ca_file | ca_pem,            -- the CA bundle: a file, or PEM text from *-data
--   cert_file | cert_pem,        -- client certificate (optional)
--   key_file | key_pem,          -- its key (optional, with the certificate)
--   token | token_file,          -- bearer token; a file is read again on each
--                                -- connection, as the kubelet rotates it
-- }
-- err names the file and the field at fault. TLS is always verified: a
-- kubeconfig that asks to skip verification is refused. The token itself is
-- never put in an error.
local M = {}

M.SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

local function read_file(path)
  local file, err = io.open(path, "rb")
  if not file then
    return nil, err
  end
  local text = file:read("*a")
  file:close()
  return text
end

-- A file path of the kubeconfig, relative to the kubeconfig's directory as
-- kubectl reads it.
local function resolve(path, base_dir)
  if type(path) ~= "string" or path == "" or path:sub(1, 1) == "/" then
    return path
  end
  return base_dir .. "/" .. path
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64_VALUE = {}
for i = 1, #B64 do
  B64_VALUE[B64:byte(i)] = i - 1
end

-- Standard base64 (padding optional, whitespace ignored) → bytes, or nil.
function M.base64_decode(text)
  if type(text) ~= "string" then
    return nil
  end
  text = text:gsub("%s", ""):gsub("=+$", "")
  local out, bits, nbits = {}, 0, 0
  for i = 1, #text do
    local value = B64_VALUE[text:byte(i)]
    if not value then
      return nil
    end
    bits = bits * 64 + value
    nbits = nbits + 6
    if nbits >= 8 then
      nbits = nbits - 8
      local byte = math.floor(bits / 2 ^ nbits)
      out[#out + 1] = string.char(byte)
      bits = bits - byte * 2 ^ nbits
    end
  end
  return table.concat(out)
end

-- The named entry of a kubeconfig list (clusters, contexts, users).
local function named(list, name)
  for _, entry in ipairs(type(list) == "table" and list or {}) do
    if type(entry) == "table" and entry.name == name then
      return entry
    end
  end
  return nil
end

-- A *-data field decoded, or its file resolved: sets access[pem_key] or
-- access[file_key]; err names the field.
local function data_or_file(access, section, data_field, file_field, pem_key, file_key, where, base_dir)
  local data, file = section[data_field], section[file_field]
  if data ~= nil then
    local pem = M.base64_decode(data)
    if not pem or pem == "" then
      return nil, string.format("%s.%s: not base64", where, data_field)
    end
    access[pem_key] = pem
  elseif file ~= nil then
    if type(file) ~= "string" or file == "" then
      return nil, string.format("%s.%s: not a path", where, file_field)
    end
    access[file_key] = resolve(file, base_dir)
  end
  return true
end

-- from_text(text, path) → access | nil, err: path names the file in errors
-- and is the base of relative paths.
function M.from_text(text, path)
  local ok, lyaml = pcall(require, "lyaml")
  if not ok then
    return nil, "kubeconfig: lyaml (lua-yaml) is needed to read " .. path
  end
  local parsed_ok, docs = pcall(lyaml.load, text, { all = true })
  local config = parsed_ok and type(docs) == "table" and docs[1]
  if type(config) ~= "table" or config[1] ~= nil then
    return nil, string.format("kubeconfig %s: not a YAML mapping%s", path,
      parsed_ok and "" or (": " .. tostring(docs)))
  end
  local base_dir = path:match("^(.*)/[^/]*$") or "."
  local context_name = config["current-context"]
  if type(context_name) ~= "string" or context_name == "" then
    return nil, string.format("kubeconfig %s: current-context is not set", path)
  end
  local context = named(config.contexts, context_name)
  context = context and context.context
  if type(context) ~= "table" then
    return nil, string.format("kubeconfig %s: contexts: no context %q (the current-context)", path, context_name)
  end
  local cluster = named(config.clusters, context.cluster)
  cluster = cluster and cluster.cluster
  if type(cluster) ~= "table" then
    return nil, string.format("kubeconfig %s: clusters: no cluster %q (of context %q)", path,
      tostring(context.cluster), context_name)
  end
  local where = string.format("kubeconfig %s: cluster %q", path, context.cluster)
  if type(cluster.server) ~= "string" or not cluster.server:match("^https?://") then
    return nil, where .. ": server is missing or not an http(s) URL"
  end
  if cluster["insecure-skip-tls-verify"] == true then
    return nil, where .. ": insecure-skip-tls-verify is set; the agent always verifies TLS"
  end
  local access = { server = cluster.server:gsub("/+$", "") }
  local done, err = data_or_file(access, cluster, "certificate-authority-data", "certificate-authority",
    "ca_pem", "ca_file", where, base_dir)
  if not done then
    return nil, err
  end

  local user = {}
  if context.user ~= nil then
    local entry = named(config.users, context.user)
    if not entry then
      return nil, string.format("kubeconfig %s: users: no user %q (of context %q)", path,
        tostring(context.user), context_name)
    end
    user = type(entry.user) == "table" and entry.user or {}
  end
  where = string.format("kubeconfig %s: user %q", path, tostring(context.user))
  done, err = data_or_file(access, user, "client-certificate-data", "client-certificate", "cert_pem", "cert_file",
    where, base_dir)
  if done then
    done, err = data_or_file(access, user, "client-key-data", "client-key", "key_pem", "key_file", where, base_dir)
  end
  if not done then
    return nil, err
  end
  if (access.cert_pem or access.cert_file) and not (access.key_pem or access.key_file) then
    return nil, where .. ": a client certificate without client-key or client-key-data"
  end
  if type(user.token) == "string" and user.token ~= "" then
    access.token = user.token
  elseif type(user.tokenFile) == "string" and user.tokenFile ~= "" then
    access.token_file = resolve(user.tokenFile, base_dir)
  end
  if user.exec ~= nil or user["auth-provider"] ~= nil then
    return nil, where .. ": exec and auth-provider credentials are not supported; use a token, a token "
      .. "file or a client certificate"
  end
  return access
end

-- from_file(path) → access | nil, err.
function M.from_file(path)
  local text, err = read_file(path)
  if not text then
    return nil, string.format("kubeconfig %s: cannot read: %s", path, tostring(err))
  end
  return M.from_text(text, path)
end

-- in_cluster(getenv[, dir]) → access | nil, err: KUBERNETES_SERVICE_HOST and
-- _PORT, and the service account's CA bundle and token under dir (default
-- M.SERVICE_ACCOUNT_DIR; a spec gives its own).
function M.in_cluster(getenv, dir)
  getenv = getenv or os.getenv
  dir = dir or M.SERVICE_ACCOUNT_DIR
  local host, port = getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
  if not host or host == "" or not port or port == "" then
    return nil, "in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are needed"
  end
  if host:find(":", 1, true) then
    host = "[" .. host .. "]" -- an IPv6 address in a URL
  end
  local access = { server = "https://" .. host .. ":" .. port, ca_file = dir .. "/ca.crt",
    token_file = dir .. "/token" }
  for _, file in ipairs({ access.ca_file, access.token_file }) do
    local text, err = read_file(file)
    if not text then
      return nil, string.format("in-cluster: %s: %s", file, tostring(err))
    end
  end
  return access
end

return M
