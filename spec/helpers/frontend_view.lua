-- The frontend view of CONTRACTS.md as the specs read it (frontends.from_entries,
-- the "frontends" of `plan --json`): one element picked by its key.
local M = {}

-- find(view, address, port, protocol[, type]) → the element for that
-- address:port/protocol (of that type: service, localRedirect, balancing;
-- the first of any type when none is given), or nil.
function M.find(view, address, port, protocol, type_name)
  for _, f in ipairs(view) do
    if f.address == address and f.port == port and f.protocol == protocol
        and (type_name == nil or f.type == type_name) then
      return f
    end
  end
  return nil
end

return M
