//! The JSON Schema subset the `json_schema` verifier checks answers against: `type` (one or a
//! list), `enum`, `const`, `properties`, `required`, `additionalProperties` (boolean or schema),
//! `items`, `minItems`/`maxItems`, `minLength`/`maxLength`, `pattern`, `minimum`/`maximum`
//! (and their exclusive forms), `anyOf`/`oneOf`/`allOf`. Other keywords are not checked; `compile`
//! names any it does not know, so a request learns what will be ignored rather than trusting it.

use serde_json::{Map, Value};

const KNOWN: &[&str] = &[
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "anyOf",
    "oneOf",
    "allOf",
    "title",
    "description",
    "$schema",
    "default",
    "examples",
];

/// What makes a schema uncheckable here (the first problem found).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(String);

/// Checks a schema once: an object (or boolean) made only of keywords this module knows, with
/// valid patterns. Err names the first problem.
pub fn compile(schema: &Value) -> Result<(), Unsupported> {
    match schema {
        Value::Bool(_) => Ok(()),
        Value::Object(o) => {
            if let Some(k) = o.keys().find(|k| !KNOWN.contains(&k.as_str())) {
                return Err(Unsupported(format!("the keyword '{k}' is not supported by this checker")));
            }
            if let Some(p) = o.get("pattern") {
                let p = p.as_str().ok_or_else(|| Unsupported("'pattern' must be a string".into()))?;
                regex::Regex::new(p).map_err(|e| Unsupported(format!("'pattern' is not a valid regular expression: {e}")))?;
            }
            let subs = o.get("properties").and_then(Value::as_object).into_iter().flat_map(|p| p.values());
            let lists = ["anyOf", "oneOf", "allOf"].into_iter().filter_map(|k| o.get(k)).flat_map(|v| v.as_array().into_iter().flatten());
            let single = ["items", "additionalProperties"].into_iter().filter_map(|k| o.get(k));
            subs.chain(lists).chain(single).try_for_each(compile)
        }
        _ => Err(Unsupported("a schema must be an object or a boolean".into())),
    }
}

/// Whether `v` satisfies `schema` (a schema `compile` accepted).
pub fn valid(schema: &Value, v: &Value) -> bool {
    let o = match schema {
        Value::Bool(b) => return *b,
        Value::Object(o) => o,
        _ => return false,
    };
    type_ok(o, v)
        && o.get("enum").and_then(Value::as_array).is_none_or(|e| e.contains(v))
        && o.get("const").is_none_or(|c| c == v)
        && object_ok(o, v)
        && array_ok(o, v)
        && string_ok(o, v)
        && number_ok(o, v)
        && o.get("allOf").and_then(Value::as_array).is_none_or(|s| s.iter().all(|s| valid(s, v)))
        && o.get("anyOf").and_then(Value::as_array).is_none_or(|s| s.iter().any(|s| valid(s, v)))
        && o.get("oneOf").and_then(Value::as_array).is_none_or(|s| s.iter().filter(|s| valid(s, v)).count() == 1)
}

fn type_ok(o: &Map<String, Value>, v: &Value) -> bool {
    let is = |t: &str| match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.as_i64().is_some() || v.as_u64().is_some() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    };
    match o.get("type") {
        None => true,
        Some(Value::String(t)) => is(t),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).any(is),
        _ => false,
    }
}

fn object_ok(o: &Map<String, Value>, v: &Value) -> bool {
    let Some(obj) = v.as_object() else { return true };
    let props = o.get("properties").and_then(Value::as_object);
    let required = o.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
    required.clone().all(|k| obj.contains_key(k))
        && obj.iter().all(|(k, val)| match props.and_then(|p| p.get(k)) {
            Some(s) => valid(s, val),
            None => o.get("additionalProperties").is_none_or(|extra| valid(extra, val)),
        })
}

fn array_ok(o: &Map<String, Value>, v: &Value) -> bool {
    let Some(items) = v.as_array() else { return true };
    let n = items.len() as u64;
    o.get("minItems").and_then(Value::as_u64).is_none_or(|m| n >= m)
        && o.get("maxItems").and_then(Value::as_u64).is_none_or(|m| n <= m)
        && o.get("items").is_none_or(|s| items.iter().all(|i| valid(s, i)))
}

fn string_ok(o: &Map<String, Value>, v: &Value) -> bool {
    let Some(s) = v.as_str() else { return true };
    let n = s.chars().count() as u64;
    o.get("minLength").and_then(Value::as_u64).is_none_or(|m| n >= m)
        && o.get("maxLength").and_then(Value::as_u64).is_none_or(|m| n <= m)
        && o.get("pattern").and_then(Value::as_str).is_none_or(|p| regex::Regex::new(p).is_ok_and(|re| re.is_match(s)))
}

fn number_ok(o: &Map<String, Value>, v: &Value) -> bool {
    let Some(x) = v.as_f64() else { return true };
    let bound = |k: &str| o.get(k).and_then(Value::as_f64);
    bound("minimum").is_none_or(|m| x >= m)
        && bound("maximum").is_none_or(|m| x <= m)
        && bound("exclusiveMinimum").is_none_or(|m| x > m)
        && bound("exclusiveMaximum").is_none_or(|m| x < m)
}

/// The JSON an answer holds: the whole trimmed answer, else its last fenced block.
pub fn answer_json(answer: &str) -> Option<Value> {
    let t = answer.trim();
    serde_json::from_str(t).ok().or_else(|| {
        let body = t.rsplit("```").nth(1)?;
        let body = body.strip_prefix("json").unwrap_or(body);
        serde_json::from_str(body.trim()).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_the_common_keywords() {
        let s = json!({"type": "object", "required": ["name", "age"], "additionalProperties": false, "properties": {
            "name": {"type": "string", "minLength": 1, "pattern": "^[A-Z]"},
            "age": {"type": "integer", "minimum": 0, "exclusiveMaximum": 150},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}}});
        compile(&s).unwrap();
        assert!(valid(&s, &json!({"name": "Ann", "age": 30, "tags": ["a"]})));
        assert!(!valid(&s, &json!({"name": "ann", "age": 30})), "pattern");
        assert!(!valid(&s, &json!({"name": "Ann"})), "required");
        assert!(!valid(&s, &json!({"name": "Ann", "age": 150})), "exclusive maximum");
        assert!(!valid(&s, &json!({"name": "Ann", "age": 3.5})), "integer");
        assert!(!valid(&s, &json!({"name": "Ann", "age": 3, "x": 1})), "additional");
        assert!(!valid(&s, &json!({"name": "Ann", "age": 3, "tags": ["c"]})), "enum items");
        assert!(valid(&json!({"anyOf": [{"type": "string"}, {"type": "null"}]}), &Value::Null));
        assert!(!valid(&json!({"oneOf": [{"type": "number"}, {"type": "integer"}]}), &json!(3)));
    }

    #[test]
    fn unknown_keywords_and_bad_patterns_are_named() {
        assert!(compile(&json!({"type": "string", "format": "email"})).unwrap_err().to_string().contains("format"));
        assert!(compile(&json!({"properties": {"a": {"pattern": "("}}})).unwrap_err().to_string().contains("pattern"));
        assert!(compile(&json!(3)).is_err());
    }

    #[test]
    fn the_json_in_an_answer() {
        assert_eq!(answer_json(" {\"a\": 1} "), Some(json!({"a": 1})));
        assert_eq!(answer_json("Here:\n```json\n[1, 2]\n```\n"), Some(json!([1, 2])));
        assert_eq!(answer_json("no json"), None);
    }
}
