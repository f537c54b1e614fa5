//! Structural check of a JSON Schema document: every keyword the constrained decoder reads has a
//! value of the right shape (type names, subschemas, arrays, non-negative integers, regular
//! expressions), recursively. It runs where a request is accepted (the extension at call and
//! enqueue time, the daemon on receipt), so an invalid schema is refused there with a message
//! naming where it is, rather than failing later in a worker.
//!
//! Locations are JSON Pointers (RFC 6901) into the `schema` argument, written after its name:
//! `schema/properties/age/minimum`. Keywords the check does not know are left alone, as JSON
//! Schema allows; annotations such as `default`, `examples` and `const` may hold any value.
//! Keywords are checked in name order, so the problem reported first does not depend on how the
//! document was written or stored (jsonb reorders keys).

use serde_json::{Map, Value};

use crate::validate::check_regex;

/// The JSON types a `type` keyword may name.
pub const TYPE_NAMES: [&str; 7] =
    ["array", "boolean", "integer", "null", "number", "object", "string"];

/// Keywords whose value is one schema.
const SCHEMA_KEYWORDS: [&str; 11] = [
    "additionalItems",
    "additionalProperties",
    "contains",
    "contentSchema",
    "else",
    "if",
    "not",
    "propertyNames",
    "then",
    "unevaluatedItems",
    "unevaluatedProperties",
];

/// Keywords whose value is an object whose every member is a schema.
const SCHEMA_MAP_KEYWORDS: [&str; 5] =
    ["$defs", "definitions", "dependentSchemas", "patternProperties", "properties"];

/// Keywords whose value is a non-empty array of schemas.
const SCHEMA_ARRAY_KEYWORDS: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];

/// Keywords whose value is a non-negative integer.
const COUNT_KEYWORDS: [&str; 8] = [
    "maxContains",
    "maxItems",
    "maxLength",
    "maxProperties",
    "minContains",
    "minItems",
    "minLength",
    "minProperties",
];

/// Lower and upper bounds that an unsatisfiable schema would cross.
const BOUND_PAIRS: [(&str, &str); 5] = [
    ("minContains", "maxContains"),
    ("minItems", "maxItems"),
    ("minLength", "maxLength"),
    ("minProperties", "maxProperties"),
    ("minimum", "maximum"),
];

/// Keywords whose value is a string.
const STRING_KEYWORDS: [&str; 12] = [
    "$anchor",
    "$comment",
    "$dynamicAnchor",
    "$dynamicRef",
    "$id",
    "$ref",
    "$schema",
    "contentEncoding",
    "contentMediaType",
    "description",
    "format",
    "title",
];

/// Keywords whose value is a boolean.
const BOOLEAN_KEYWORDS: [&str; 4] = ["deprecated", "readOnly", "uniqueItems", "writeOnly"];

/// Where a JSON Schema is malformed and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} {problem}")]
pub struct SchemaError {
    /// `schema` followed by the JSON Pointer of the offending value.
    pub path: String,
    /// What is wrong with it.
    pub problem: SchemaProblem,
}

/// What is wrong with one value of a JSON Schema; messages are lower-case and follow its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaProblem {
    /// A place that holds a schema holds something else.
    #[error("must be a JSON object or boolean (a JSON Schema), got a JSON {0}")]
    NotASchema(&'static str),
    /// A keyword's value is of the wrong JSON type.
    #[error("must be {expected}, got a JSON {got}")]
    WrongKind {
        /// What the keyword takes, e.g. "an array of strings".
        expected: &'static str,
        /// The JSON type found.
        got: &'static str,
    },
    /// A count (`minLength`, `maxItems`, …) that is negative or not a whole number.
    #[error("must be a non-negative integer, got {0}")]
    NotACount(String),
    /// `multipleOf` zero or negative.
    #[error("must be greater than 0, got {0}")]
    NotPositive(String),
    /// A `type` entry that names no JSON type.
    #[error("must be one of {names}, got {0:?}", names = TYPE_NAMES.join(", "))]
    UnknownType(String),
    /// An array that must not be empty was.
    #[error("must contain at least one element")]
    Empty,
    /// An array whose elements must be distinct repeats one.
    #[error("repeats an earlier element: {0}")]
    Repeated(String),
    /// A lower bound above its upper bound, which no value satisfies.
    #[error("must not exceed {upper} ({max}), got {min}")]
    BoundsCross {
        /// The upper bound's keyword.
        upper: &'static str,
        /// The lower bound's value.
        min: String,
        /// The upper bound's value.
        max: String,
    },
    /// A `pattern` or `patternProperties` name that does not parse as a regular expression.
    #[error("is not a valid regular expression: {0}")]
    Regex(String),
}

/// Checks that `schema` is a well-formed JSON Schema document (see the module documentation).
pub fn check(schema: &Value) -> Result<(), SchemaError> {
    let mut path = String::from("schema");
    check_schema_at(schema, &mut path)
}

/// The name of a JSON value's type, as used in the messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Runs `f` with `segment` appended to `path` as one JSON Pointer reference token.
fn at<T>(path: &mut String, segment: &str, f: impl FnOnce(&mut String) -> T) -> T {
    let len = path.len();
    path.push('/');
    for c in segment.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
    let out = f(path);
    path.truncate(len);
    out
}

fn fail<T>(path: &str, problem: SchemaProblem) -> Result<T, SchemaError> {
    Err(SchemaError { path: path.to_owned(), problem })
}

fn wrong_kind<T>(path: &str, expected: &'static str, got: &Value) -> Result<T, SchemaError> {
    fail(path, SchemaProblem::WrongKind { expected, got: kind(got) })
}

fn check_schema_at(schema: &Value, path: &mut String) -> Result<(), SchemaError> {
    match schema {
        Value::Bool(_) => Ok(()),
        Value::Object(map) => check_keywords(map, path),
        other => fail(path, SchemaProblem::NotASchema(kind(other))),
    }
}

fn check_keywords(map: &Map<String, Value>, path: &mut String) -> Result<(), SchemaError> {
    for (keyword, value) in sorted(map) {
        at(path, keyword, |path| check_keyword(keyword, value, path))?;
    }
    for (lower, upper) in BOUND_PAIRS {
        if let (Some(min), Some(max)) = (map.get(lower), map.get(upper)) {
            let (Some(lo), Some(hi)) = (min.as_f64(), max.as_f64()) else { continue };
            if lo > hi {
                return at(path, lower, |path| {
                    fail(
                        path,
                        SchemaProblem::BoundsCross {
                            upper,
                            min: min.to_string(),
                            max: max.to_string(),
                        },
                    )
                });
            }
        }
    }
    Ok(())
}

/// Checks one keyword's value; `path` already points at it.
fn check_keyword(keyword: &str, value: &Value, path: &mut String) -> Result<(), SchemaError> {
    match keyword {
        "type" => check_type(value, path),
        "items" => match value {
            // the tuple form of drafts up to 2019-09
            Value::Array(_) => check_schema_array(value, path),
            _ => check_schema_at(value, path),
        },
        "required" => check_string_array(value, path),
        "enum" => match value {
            Value::Array(values) if values.is_empty() => fail(path, SchemaProblem::Empty),
            Value::Array(_) => Ok(()),
            other => wrong_kind(path, "an array", other),
        },
        "dependentRequired" => check_members(value, path, check_string_array),
        "dependencies" => check_members(value, path, |v, path| match v {
            Value::Array(_) => check_string_array(v, path),
            _ => check_schema_at(v, path),
        }),
        "minimum" | "maximum" => match value {
            Value::Number(_) => Ok(()),
            other => wrong_kind(path, "a number", other),
        },
        // a number since draft 6; a boolean modifying minimum/maximum in draft 4
        "exclusiveMinimum" | "exclusiveMaximum" => match value {
            Value::Number(_) | Value::Bool(_) => Ok(()),
            other => wrong_kind(path, "a number (or a boolean, as in draft 4)", other),
        },
        "multipleOf" => match value {
            Value::Number(n) if n.as_f64().is_some_and(|f| f > 0.0) => Ok(()),
            Value::Number(n) => fail(path, SchemaProblem::NotPositive(n.to_string())),
            other => wrong_kind(path, "a number", other),
        },
        "pattern" => match value {
            Value::String(pattern) => {
                check_regex(pattern).or_else(|e| fail(path, SchemaProblem::Regex(e)))
            }
            other => wrong_kind(path, "a string", other),
        },
        "patternProperties" => {
            check_members(value, path, check_schema_at)?;
            for (name, _) in value.as_object().map(sorted).unwrap_or_default() {
                if let Err(e) = check_regex(name) {
                    return at(path, name, |path| fail(path, SchemaProblem::Regex(e)));
                }
            }
            Ok(())
        }
        k if SCHEMA_KEYWORDS.contains(&k) => check_schema_at(value, path),
        k if SCHEMA_MAP_KEYWORDS.contains(&k) => check_members(value, path, check_schema_at),
        k if SCHEMA_ARRAY_KEYWORDS.contains(&k) => check_schema_array(value, path),
        k if COUNT_KEYWORDS.contains(&k) => match value {
            Value::Number(n) if n.is_u64() => Ok(()),
            Value::Number(n) => fail(path, SchemaProblem::NotACount(n.to_string())),
            other => wrong_kind(path, "a non-negative integer", other),
        },
        k if STRING_KEYWORDS.contains(&k) => match value {
            Value::String(_) => Ok(()),
            other => wrong_kind(path, "a string", other),
        },
        k if BOOLEAN_KEYWORDS.contains(&k) => match value {
            Value::Bool(_) => Ok(()),
            other => wrong_kind(path, "a boolean", other),
        },
        _ => Ok(()),
    }
}

/// `type`: one type name, or a non-empty array of distinct type names.
fn check_type(value: &Value, path: &mut String) -> Result<(), SchemaError> {
    let known = |name: &str, path: &str| {
        if TYPE_NAMES.contains(&name) {
            Ok(())
        } else {
            fail(path, SchemaProblem::UnknownType(name.to_owned()))
        }
    };
    match value {
        Value::String(name) => known(name, path),
        Value::Array(names) => {
            if names.is_empty() {
                return fail(path, SchemaProblem::Empty);
            }
            for (i, name) in names.iter().enumerate() {
                at(path, &i.to_string(), |path| match name {
                    Value::String(n) if names[..i].contains(name) => {
                        fail(path, SchemaProblem::Repeated(format!("{n:?}")))
                    }
                    Value::String(n) => known(n, path),
                    other => wrong_kind(path, "a string", other),
                })?;
            }
            Ok(())
        }
        other => wrong_kind(path, "a string or an array of strings", other),
    }
}

/// An array of distinct strings (`required`, the members of `dependentRequired`).
fn check_string_array(value: &Value, path: &mut String) -> Result<(), SchemaError> {
    let Value::Array(items) = value else {
        return wrong_kind(path, "an array of strings", value);
    };
    for (i, item) in items.iter().enumerate() {
        at(path, &i.to_string(), |path| match item {
            Value::String(s) if items[..i].contains(item) => {
                fail(path, SchemaProblem::Repeated(format!("{s:?}")))
            }
            Value::String(_) => Ok(()),
            other => wrong_kind(path, "a string", other),
        })?;
    }
    Ok(())
}

/// A non-empty array of schemas.
fn check_schema_array(value: &Value, path: &mut String) -> Result<(), SchemaError> {
    let Value::Array(schemas) = value else {
        return wrong_kind(path, "a non-empty array of schemas", value);
    };
    if schemas.is_empty() {
        return fail(path, SchemaProblem::Empty);
    }
    for (i, schema) in schemas.iter().enumerate() {
        at(path, &i.to_string(), |path| check_schema_at(schema, path))?;
    }
    Ok(())
}

/// An object whose every member passes `check`.
fn check_members(
    value: &Value,
    path: &mut String,
    check: impl Fn(&Value, &mut String) -> Result<(), SchemaError>,
) -> Result<(), SchemaError> {
    let Value::Object(members) = value else {
        return wrong_kind(path, "an object", value);
    };
    for (name, member) in sorted(members) {
        at(path, name, |path| check(member, path))?;
    }
    Ok(())
}

/// An object's members by name. serde_json keeps insertion order when a crate in the build
/// enables `preserve_order` (the daemon's does) and sorts otherwise (the extension's); sorting
/// here makes the first problem reported the same in both.
fn sorted(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut members: Vec<_> = map.iter().collect();
    members.sort_unstable_by_key(|(name, _)| *name);
    members
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn well_formed_schemas_pass() {
        for schema in [
            json!(true),
            json!(false),
            json!({}),
            json!({"type": "object", "properties": {"entities": {"type": "array"}}}),
            json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}),
            json!({"type": ["string", "null"], "minLength": 0, "maxLength": 8, "pattern": "^[a-z]+$"}),
            json!({"type": "integer", "minimum": -5, "maximum": 5.5, "multipleOf": 0.5}),
            json!({"type": "number", "minimum": 1, "exclusiveMinimum": true}),
            json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10}),
            json!({"type": "array", "items": [{"type": "string"}], "additionalItems": false}),
            json!({"type": "array", "prefixItems": [true, {"const": 1}], "items": {"enum": [1, "a", null]}}),
            json!({"anyOf": [{"$ref": "#/$defs/a"}], "$defs": {"a": {"type": "string"}}}),
            json!({"definitions": {"a/b": {}}, "patternProperties": {"^x-": {"type": "string"}}}),
            json!({"dependentRequired": {"a": ["b"]}, "dependencies": {"c": ["d"], "e": {}}}),
            json!({"title": "t", "description": "d", "default": 5, "examples": [1], "x-guidance": {}}),
            json!({"minItems": 2, "maxItems": 2, "uniqueItems": true, "format": "date"}),
            json!({"not": {"type": "null"}, "if": true, "then": {}, "else": false}),
        ] {
            assert_eq!(check(&schema), Ok(()), "{schema}");
        }
    }

    #[test]
    fn malformed_schemas_are_refused_with_their_path() {
        let table = [
            (json!([1]), "schema must be a JSON object or boolean (a JSON Schema), got a JSON array"),
            (json!(null), "schema must be a JSON object or boolean (a JSON Schema), got a JSON null"),
            (json!({"type": 12}), "schema/type must be a string or an array of strings, got a JSON number"),
            (
                json!({"type": "strin"}),
                "schema/type must be one of array, boolean, integer, null, number, object, string, got \"strin\"",
            ),
            (json!({"type": []}), "schema/type must contain at least one element"),
            (json!({"type": ["string", 1]}), "schema/type/1 must be a string, got a JSON number"),
            (
                json!({"type": ["string", "null", "string"]}),
                "schema/type/2 repeats an earlier element: \"string\"",
            ),
            (
                json!({"properties": []}),
                "schema/properties must be an object, got a JSON array",
            ),
            (
                json!({"properties": {"a": 5}}),
                "schema/properties/a must be a JSON object or boolean (a JSON Schema), got a JSON number",
            ),
            (
                json!({"properties": {"a": {"properties": {"b": {"type": "text"}}}}}),
                "schema/properties/a/properties/b/type must be one of array, boolean, integer, null, number, object, string, got \"text\"",
            ),
            (
                json!({"properties": {"a/b~c": {"type": 1}}}),
                "schema/properties/a~1b~0c/type must be a string or an array of strings, got a JSON number",
            ),
            (
                json!({"$defs": {"x": "string"}}),
                "schema/$defs/x must be a JSON object or boolean (a JSON Schema), got a JSON string",
            ),
            (
                json!({"definitions": {"x": null}}),
                "schema/definitions/x must be a JSON object or boolean (a JSON Schema), got a JSON null",
            ),
            (
                json!({"items": "string"}),
                "schema/items must be a JSON object or boolean (a JSON Schema), got a JSON string",
            ),
            (json!({"items": []}), "schema/items must contain at least one element"),
            (
                json!({"items": {"items": {"minItems": -1}}}),
                "schema/items/items/minItems must be a non-negative integer, got -1",
            ),
            (
                json!({"additionalProperties": 1}),
                "schema/additionalProperties must be a JSON object or boolean (a JSON Schema), got a JSON number",
            ),
            (
                json!({"not": []}),
                "schema/not must be a JSON object or boolean (a JSON Schema), got a JSON array",
            ),
            (json!({"required": "name"}), "schema/required must be an array of strings, got a JSON string"),
            (json!({"required": ["a", 1]}), "schema/required/1 must be a string, got a JSON number"),
            (json!({"required": ["a", "b", "a"]}), "schema/required/2 repeats an earlier element: \"a\""),
            (json!({"enum": "a"}), "schema/enum must be an array, got a JSON string"),
            (json!({"enum": []}), "schema/enum must contain at least one element"),
            (json!({"minLength": "3"}), "schema/minLength must be a non-negative integer, got a JSON string"),
            (json!({"maxLength": 2.5}), "schema/maxLength must be a non-negative integer, got 2.5"),
            (json!({"maxItems": 2.0}), "schema/maxItems must be a non-negative integer, got 2.0"),
            (json!({"minProperties": -3}), "schema/minProperties must be a non-negative integer, got -3"),
            (json!({"maxContains": true}), "schema/maxContains must be a non-negative integer, got a JSON boolean"),
            (json!({"minLength": 5, "maxLength": 2}), "schema/minLength must not exceed maxLength (2), got 5"),
            (json!({"minItems": 3, "maxItems": 1}), "schema/minItems must not exceed maxItems (1), got 3"),
            (json!({"minimum": 10, "maximum": 1.5}), "schema/minimum must not exceed maximum (1.5), got 10"),
            (json!({"minimum": "0"}), "schema/minimum must be a number, got a JSON string"),
            (
                json!({"exclusiveMaximum": "9"}),
                "schema/exclusiveMaximum must be a number (or a boolean, as in draft 4), got a JSON string",
            ),
            (json!({"multipleOf": 0}), "schema/multipleOf must be greater than 0, got 0"),
            (json!({"multipleOf": -2.5}), "schema/multipleOf must be greater than 0, got -2.5"),
            (json!({"anyOf": []}), "schema/anyOf must contain at least one element"),
            (json!({"allOf": {}}), "schema/allOf must be a non-empty array of schemas, got a JSON object"),
            (
                json!({"oneOf": [{"type": "string"}, 3]}),
                "schema/oneOf/1 must be a JSON object or boolean (a JSON Schema), got a JSON number",
            ),
            (json!({"prefixItems": []}), "schema/prefixItems must contain at least one element"),
            (json!({"pattern": 5}), "schema/pattern must be a string, got a JSON number"),
            (json!({"pattern": "(ab"}), "schema/pattern is not a valid regular expression: unclosed group"),
            (
                json!({"properties": {"email": {"type": "string", "pattern": "[a-z"}}}),
                "schema/properties/email/pattern is not a valid regular expression: unclosed character class",
            ),
            (
                json!({"patternProperties": {"(x": {}}}),
                "schema/patternProperties/(x is not a valid regular expression: unclosed group",
            ),
            (
                json!({"patternProperties": {"^x": 1}}),
                "schema/patternProperties/^x must be a JSON object or boolean (a JSON Schema), got a JSON number",
            ),
            (
                json!({"dependentRequired": {"a": [1]}}),
                "schema/dependentRequired/a/0 must be a string, got a JSON number",
            ),
            (
                json!({"dependencies": {"a": 1}}),
                "schema/dependencies/a must be a JSON object or boolean (a JSON Schema), got a JSON number",
            ),
            (json!({"$ref": 1}), "schema/$ref must be a string, got a JSON number"),
            (json!({"format": ["date"]}), "schema/format must be a string, got a JSON array"),
            (json!({"uniqueItems": "yes"}), "schema/uniqueItems must be a boolean, got a JSON string"),
            (
                json!({"if": {"then": 1}}),
                "schema/if/then must be a JSON object or boolean (a JSON Schema), got a JSON number",
            ),
            // keywords are checked in name order
            (json!({"type": 1, "minLength": -1}), "schema/minLength must be a non-negative integer, got -1"),
        ];
        for (schema, message) in table {
            let err = check(&schema).expect_err(&schema.to_string());
            assert_eq!(err.to_string(), message, "{schema}");
        }
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(
            check(&json!({"properties": {"a": {"type": "strin"}}})),
            Err(SchemaError {
                path: "schema/properties/a/type".into(),
                problem: SchemaProblem::UnknownType("strin".into()),
            })
        );
    }
}
