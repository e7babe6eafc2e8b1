-- luacheck configuration: the Lua modules run under LuaJIT; the specs are
-- busted files (describe, it, assert, ... as globals).
std = "luajit"
max_line_length = 120
codes = true

exclude_files = { "build*/**" }

files["spec/"] = { std = "+busted" }
files[".busted"] = { std = "+busted" }
files[".luacheckrc"] = { std = "+luacheckrc" }
