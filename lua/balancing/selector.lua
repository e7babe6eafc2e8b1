-- Kubernetes LabelSelector: matchLabels AND every matchExpression.
--
--   local sel, err = selector.compile({ matchLabels = { app = "dns" },
--     matchExpressions = { { key = "tier", operator = "NotIn", values = { "canary" } } } })
--   sel:matches(pod.metadata.labels)  --> boolean
--
-- Semantics are those of k8s.io/apimachinery labels.Selector:
--   In            the key is present and its value is one of values;
--   NotIn         the key is absent, or its value is none of values;
--   Exists        the key is present (any value);
--   DoesNotExist  the key is absent.
-- An empty selector ({}) matches everything. Errors name the part at fault
-- relative to the selector (the caller prefixes its own field path); list
-- positions count from 0, as the API server counts them in its own messages:
-- `matchExpressions[0].operator: unknown operator "Foo"` is the first
-- expression, `matchExpressions[0].values[1]` its second value.
local object = require("balancing.object")

local M = {}

local Selector = {}
Selector.__index = Selector

local absent, present, is_list = object.absent, object.present, object.is_list

local function quote(value)
  return string.format("%q", tostring(value))
end

local OPERATORS = { In = true, NotIn = true, Exists = true, DoesNotExist = true }

local function compile_expression(expr, where)
  if type(expr) ~= "table" then
    return nil, where .. ": must be an object"
  end
  local key = expr.key
  if absent(key) or key == "" then
    return nil, where .. ".key: missing"
  end
  if type(key) ~= "string" then
    return nil, where .. ".key: must be a string, not " .. quote(key)
  end
  local operator = expr.operator
  if absent(operator) then
    return nil, where .. ".operator: missing"
  end
  if not OPERATORS[operator] then
    return nil, string.format("%s.operator: unknown operator %s (In, NotIn, Exists, DoesNotExist)",
      where, quote(operator))
  end
  local values = expr.values
  if absent(values) then
    values = {}
  end
  if not is_list(values) then
    return nil, where .. ".values: must be a list of strings"
  end
  local set = {}
  for i, value in ipairs(values) do
    if type(value) ~= "string" then
      return nil, string.format("%s.values[%d]: must be a string, not %s", where, i - 1, quote(value))
    end
    set[value] = true
  end
  if (operator == "In" or operator == "NotIn") and #values == 0 then
    return nil, string.format("%s.values: required (non-empty) for operator %s", where, operator)
  end
  if (operator == "Exists" or operator == "DoesNotExist") and #values > 0 then
    return nil, string.format("%s.values: must be empty for operator %s", where, operator)
  end
  return { key = key, operator = operator, values = set }
end

-- compile(spec) → a compiled selector, or nil, err. A missing (nil or JSON
-- null) selector is an error: a policy without one selects nothing on purpose
-- only if it says so, and Kubernetes' "null selects nothing" is a trap.
function M.compile(spec)
  if absent(spec) then
    return nil, "missing"
  end
  if type(spec) ~= "table" then
    return nil, "must be an object (matchLabels, matchExpressions)"
  end
  local match_labels = {}
  if not absent(spec.matchLabels) then
    if type(spec.matchLabels) ~= "table" then
      return nil, "matchLabels: must be a map of strings"
    end
    for key, value in pairs(spec.matchLabels) do
      if type(key) ~= "string" then
        return nil, "matchLabels: keys must be strings, not " .. quote(key)
      end
      if type(value) ~= "string" then
        return nil, string.format("matchLabels.%s: must be a string, not %s", key,
          absent(value) and "null" or quote(value))
      end
      match_labels[key] = value
    end
  end
  local expressions = {}
  if not absent(spec.matchExpressions) then
    if not is_list(spec.matchExpressions) then
      return nil, "matchExpressions: must be a list"
    end
    for i, expr in ipairs(spec.matchExpressions) do
      local compiled, err = compile_expression(expr, string.format("matchExpressions[%d]", i - 1))
      if not compiled then
        return nil, err
      end
      expressions[i] = compiled
    end
  end
  return setmetatable({ match_labels = match_labels, expressions = expressions }, Selector)
end

-- matches(labels) → boolean; labels is a metadata.labels table (nil or JSON
-- null: no labels).
function Selector:matches(labels)
  if absent(labels) or type(labels) ~= "table" then
    labels = {}
  end
  for key, value in pairs(self.match_labels) do
    if labels[key] ~= value then
      return false
    end
  end
  for _, expr in ipairs(self.expressions) do
    local value = present(labels[expr.key])
    local op = expr.operator
    if op == "In" then
      if value == nil or not expr.values[value] then
        return false
      end
    elseif op == "NotIn" then
      if value ~= nil and expr.values[value] then
        return false
      end
    elseif op == "Exists" then
      if value == nil then
        return false
      end
    elseif value ~= nil then -- DoesNotExist
      return false
    end
  end
  return true
end

-- Whether the selector matches every label set (the empty selector).
function Selector:is_empty()
  return next(self.match_labels) == nil and #self.expressions == 0
end

M.Selector = Selector

return M
