-- Where the API server is and how to authenticate (issue 7,
-- "Authentication"): a kubeconfig's current context — server, CA data or
-- file, client certificate and key (data or file), bearer token or token
-- file — or the pod's service account. TLS is always verified; errors name
-- the file and field and never carry the token.
local kubeconfig = require("balancing.kubeconfig")
local scratch = require("helpers.scratch")

local PEM = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"
local TOKEN = "s3cr3t-token-value"

-- base64 of text, with the shell's base64 (the reference the decoder is held to)
local function b64(text)
  local dir = scratch.temp_dir()
  scratch.write_file(dir .. "/in", text)
  local handle = assert(io.popen("base64 -w0 " .. scratch.quote(dir .. "/in")))
  local out = handle:read("*a")
  handle:close()
  scratch.remove_dir(dir)
  return out
end

-- A kubeconfig as `kubectl config` writes it, with the user given.
local function config(opts)
  opts = opts or {}
  local cluster = opts.cluster or ("    certificate-authority-data: " .. b64(PEM) .. "\n")
  local user = opts.user or ("    token: " .. TOKEN .. "\n")
  return table.concat({
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- cluster:",
    cluster .. "    server: " .. (opts.server or "https://127.0.0.1:6443"),
    "  name: test",
    "contexts:",
    "- context:",
    "    cluster: " .. (opts.context_cluster or "test"),
    "    user: agent",
    "  name: test",
    "current-context: " .. (opts.current or "test"),
    "preferences: {}",
    "users:",
    "- name: agent",
    "  user:",
    user,
  }, "\n")
end

describe("kubeconfig", function()
  local dir
  before_each(function()
    dir = scratch.temp_dir()
  end)
  after_each(function()
    scratch.remove_dir(dir)
  end)

  local function load(text)
    scratch.write_file(dir .. "/config", text)
    return kubeconfig.from_file(dir .. "/config")
  end

  it("decodes base64 as the base64 tool encodes it", function()
    for _, text in ipairs({ "", "a", "ab", "abc", "abcd", PEM, string.rep("\255\0\127", 33) }) do
      assert.equals(text, kubeconfig.base64_decode(b64(text)))
    end
    assert.is_nil(kubeconfig.base64_decode("not*base64"))
  end)

  it("reads the current context's server, CA data and bearer token", function()
    local access = assert(load(config()))
    assert.same({ server = "https://127.0.0.1:6443", ca_pem = PEM, token = TOKEN }, access)
  end)

  it("resolves CA, client certificate and key and token files against the kubeconfig's directory", function()
    local access = assert(load(config{
      cluster = "    certificate-authority: pki/ca.crt\n",
      user = "    client-certificate: pki/agent.crt\n    client-key: /etc/agent.key\n    tokenFile: token\n",
    }))
    assert.equals(dir .. "/pki/ca.crt", access.ca_file)
    assert.equals(dir .. "/pki/agent.crt", access.cert_file)
    assert.equals("/etc/agent.key", access.key_file)
    assert.equals(dir .. "/token", access.token_file)
  end)

  it("reads client certificate and key data", function()
    local access = assert(load(config{
      user = "    client-certificate-data: " .. b64(PEM) .. "\n    client-key-data: " .. b64("KEY") .. "\n" }))
    assert.equals(PEM, access.cert_pem)
    assert.equals("KEY", access.key_pem)
  end)

  it("refuses a client certificate without its key", function()
    local access, err = load(config{ user = "    client-certificate-data: " .. b64(PEM) .. "\n" })
    assert.is_nil(access)
    assert.matches('user "agent": a client certificate without client-key', err, 1, true)
  end)

  it("refuses insecure-skip-tls-verify: TLS is always verified", function()
    local access, err = load(config{ cluster = "    insecure-skip-tls-verify: true\n" })
    assert.is_nil(access)
    assert.matches("insecure-skip-tls-verify is set", err, 1, true)
  end)

  it("refuses exec credentials with a reason", function()
    local access, err = load(config{ user = "    exec:\n      command: aws\n" })
    assert.is_nil(access)
    assert.matches("exec and auth-provider credentials are not supported", err, 1, true)
  end)

  it("names the file and what is missing: current-context, context, cluster, server", function()
    local cases = {
      { config{ current = '""' }, "current-context is not set" },
      { config{ current = "other" }, 'no context "other"' },
      { config{ context_cluster = "elsewhere" }, 'no cluster "elsewhere"' },
      { config{ server = "127.0.0.1:6443" }, "server is missing or not an http(s) URL" },
      { "- just\n- a list\n", "not a YAML mapping" },
    }
    for _, case in ipairs(cases) do
      local access, err = load(case[1])
      assert.is_nil(access)
      assert.matches(dir .. "/config", err, 1, true)
      assert.matches(case[2], err, 1, true)
      assert.is_nil(err:find(TOKEN, 1, true)) -- never the token
    end
  end)

  it("names an unreadable file", function()
    local access, err = kubeconfig.from_file(dir .. "/missing")
    assert.is_nil(access)
    assert.matches("kubeconfig " .. dir .. "/missing: cannot read", err, 1, true)
  end)

  describe("in-cluster", function()
    local function env(values)
      return function(name)
        return values[name]
      end
    end

    it("uses KUBERNETES_SERVICE_HOST and _PORT with the service account's CA and token files", function()
      scratch.write_file(dir .. "/ca.crt", PEM)
      scratch.write_file(dir .. "/token", TOKEN)
      local access = assert(kubeconfig.in_cluster(env{ KUBERNETES_SERVICE_HOST = "10.96.0.1",
        KUBERNETES_SERVICE_PORT = "443" }, dir))
      assert.same({ server = "https://10.96.0.1:443", ca_file = dir .. "/ca.crt", token_file = dir .. "/token" },
        access)
    end)

    it("brackets an IPv6 service host", function()
      scratch.write_file(dir .. "/ca.crt", PEM)
      scratch.write_file(dir .. "/token", TOKEN)
      local access = assert(kubeconfig.in_cluster(env{ KUBERNETES_SERVICE_HOST = "fd00::1",
        KUBERNETES_SERVICE_PORT = "443" }, dir))
      assert.equals("https://[fd00::1]:443", access.server)
    end)

    it("names what is missing: the variables, the token file", function()
      local access, err = kubeconfig.in_cluster(env{}, dir)
      assert.is_nil(access)
      assert.matches("KUBERNETES_SERVICE_HOST", err, 1, true)
      scratch.write_file(dir .. "/ca.crt", PEM)
      access, err = kubeconfig.in_cluster(env{ KUBERNETES_SERVICE_HOST = "10.96.0.1",
        KUBERNETES_SERVICE_PORT = "443" }, dir)
      assert.is_nil(access)
      assert.matches(dir .. "/token", err, 1, true)
    end)
  end)
end)
