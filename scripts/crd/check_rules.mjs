// The CRDs' CEL rules (x-kubernetes-validations) evaluated by a real CEL
// implementation (@bufbuild/cel), as the API server applies them: defaults
// first, then every rule at every schema node whose value is present, with
// `self` bound to that value. A result other than true (false, or an
// evaluation error) is a refusal.
//
//   node scripts/crd/check_rules.mjs < {"schema": openAPIV3Schema, "objects": [...]}
//   → {"results": [{"errors": [{"path", "rule", "message", "result"}]}],
//      "rules": [{"at", "rule", "evaluated", "refused"}]}
//
// `at` is the rule's place in the schema (spec.frontend.addressMatcher.toPorts[].port),
// so that a spec can ask that every rule was broken by some fixture.
import { readFileSync } from "node:fs";
import { run } from "@bufbuild/cel";

const input = JSON.parse(readFileSync(0, "utf8"));

// JSON values as CEL inputs: objects as maps (has() tests a key), integers as int
function toCel(value) {
  if (Array.isArray(value)) return value.map(toCel);
  if (value !== null && typeof value === "object") {
    return new Map(Object.entries(value).map(([k, v]) => [k, toCel(v)]));
  }
  if (typeof value === "number" && Number.isInteger(value)) return BigInt(value);
  return value;
}

// Structural defaulting, as the API server does before validation.
function applyDefaults(schema, value) {
  if (Array.isArray(value) && schema.items) {
    value.forEach((item) => applyDefaults(schema.items, item));
  } else if (value !== null && typeof value === "object" && schema.properties) {
    for (const [key, sub] of Object.entries(schema.properties)) {
      if (value[key] === undefined && sub.default !== undefined) value[key] = structuredClone(sub.default);
      if (value[key] !== undefined) applyDefaults(sub, value[key]);
    }
  }
}

const rules = new Map();
function ruleEntry(at, rule) {
  const id = at + "\u0000" + rule.rule;
  if (!rules.has(id)) rules.set(id, { at, rule: rule.rule, evaluated: 0, refused: 0 });
  return rules.get(id);
}

// Every rule of the schema, evaluated or not, so that one never reached shows as 0.
function collect(schema, at) {
  for (const rule of schema["x-kubernetes-validations"] || []) ruleEntry(at, rule);
  for (const [key, sub] of Object.entries(schema.properties || {})) collect(sub, at ? at + "." + key : key);
  if (schema.items) collect(schema.items, at + "[]");
  if (typeof schema.additionalProperties === "object") collect(schema.additionalProperties, at + ".*");
}

function walk(schema, value, path, at, errors) {
  if (value === undefined) return;
  if (Array.isArray(value) && schema.items) {
    value.forEach((item, i) => walk(schema.items, item, `${path}[${i}]`, at + "[]", errors));
  } else if (value !== null && typeof value === "object") {
    for (const [key, item] of Object.entries(value)) {
      const sub = (schema.properties || {})[key] ||
        (typeof schema.additionalProperties === "object" ? schema.additionalProperties : null);
      if (sub) walk(sub, item, path ? path + "." + key : key, at ? at + "." + ((schema.properties || {})[key] ? key : "*") : key, errors);
    }
  }
  for (const rule of schema["x-kubernetes-validations"] || []) {
    const entry = ruleEntry(at, rule);
    entry.evaluated++;
    let result;
    try {
      result = run(rule.rule, { self: toCel(value) });
    } catch (err) {
      result = err;
    }
    if (result !== true) {
      entry.refused++;
      errors.push({ path, rule: rule.rule, message: rule.message || "", result: String(result) });
    }
  }
}

collect(input.schema, "");
const results = input.objects.map((object) => {
  const copy = structuredClone(object);
  applyDefaults(input.schema, copy);
  const errors = [];
  walk(input.schema, copy, "", "", errors);
  return { errors };
});
process.stdout.write(JSON.stringify({ results, rules: [...rules.values()] }) + "\n");
