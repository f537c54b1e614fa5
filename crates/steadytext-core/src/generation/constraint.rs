//! Constraints on generated text: a JSON schema, a regular expression or a list of choices.

use llguidance::api::TopLevelGrammar;
use serde_json::{json, Value};
use steadytext_api::validate::{check_choices, check_pattern, check_schema};

use crate::CoreError;

/// What a constrained generation's output must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// Bare JSON text (no code fences, no prose) that validates against this JSON Schema.
    Json(Value),
    /// Text that fully matches this regular expression (Rust `regex` syntax, implicitly
    /// anchored at both ends).
    Regex(String),
    /// Exactly one of these strings (non-empty, distinct).
    Choice(Vec<String>),
}

impl Constraint {
    /// Checks the constraint's syntax with the rules the SQL side uses (`steadytext-api`'s
    /// `validate`), so that the daemon and the extension refuse the same inputs.
    pub fn validate(&self) -> Result<(), CoreError> {
        match self {
            Constraint::Json(schema) => {
                check_schema(schema).map_err(|e| CoreError::InvalidSchema(e.to_string()))
            }
            Constraint::Regex(pattern) => {
                check_pattern(pattern).map_err(|e| CoreError::InvalidRegex(e.to_string()))
            }
            Constraint::Choice(choices) => {
                check_choices(choices).map_err(|e| CoreError::InvalidChoices(e.to_string()))
            }
        }
    }

    /// The llguidance grammar of this constraint (call [`Constraint::validate`] first).
    pub(crate) fn grammar(&self) -> TopLevelGrammar {
        match self {
            Constraint::Json(schema) => TopLevelGrammar::from_json_schema(compact_json(schema)),
            Constraint::Regex(pattern) => TopLevelGrammar::from_regex(pattern),
            Constraint::Choice(choices) => TopLevelGrammar::from_regex(&choice_regex(choices)),
        }
    }

    /// The typed error for a constraint llguidance could not compile.
    pub(crate) fn compile_error(&self, reason: String) -> CoreError {
        match self {
            Constraint::Json(_) => CoreError::InvalidSchema(reason),
            Constraint::Regex(_) => CoreError::InvalidRegex(reason),
            Constraint::Choice(_) => CoreError::InvalidChoices(reason),
        }
    }
}

/// The schema with llguidance's output options set to compact JSON (`,` and `:` without
/// whitespace, none between tokens), unless the schema sets its own `x-guidance` options.
///
/// Flexible whitespace would let a small model spend its token budget on blanks and newlines;
/// compact output is also the canonical form a user expects from a SQL function.
fn compact_json(schema: &Value) -> Value {
    match schema {
        Value::Object(map) if !map.contains_key("x-guidance") => {
            let mut map = map.clone();
            map.insert(
                "x-guidance".into(),
                json!({"whitespace_flexible": false, "item_separator": ",", "key_separator": ":"}),
            );
            Value::Object(map)
        }
        other => other.clone(),
    }
}

/// A regular expression matching exactly one of `choices`, each escaped literally.
fn choice_regex(choices: &[String]) -> String {
    let alternatives: Vec<String> = choices.iter().map(|c| regex_syntax::escape(c)).collect();
    format!("(?:{})", alternatives.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_are_escaped_literally() {
        let re = choice_regex(&["a.b".into(), "(x|y)".into(), "plain".into()]);
        assert_eq!(re, r"(?:a\.b|\(x\|y\)|plain)");
    }

    #[test]
    fn validation_errors_are_typed() {
        let bad_regex = Constraint::Regex("(ab".into()).validate().unwrap_err();
        assert!(matches!(bad_regex, CoreError::InvalidRegex(_)), "{bad_regex}");
        let bad_schema = Constraint::Json(json!([1, 2])).validate().unwrap_err();
        assert!(matches!(bad_schema, CoreError::InvalidSchema(_)), "{bad_schema}");
        for choices in [vec![], vec!["a".to_string(), String::new()], vec!["a".into(), "a".into()]]
        {
            let err = Constraint::Choice(choices.clone()).validate().unwrap_err();
            assert!(matches!(err, CoreError::InvalidChoices(_)), "{choices:?}: {err}");
        }
        assert!(Constraint::Choice(vec!["yes".into(), "no".into()]).validate().is_ok());
    }

    #[test]
    fn compact_options_do_not_override_the_callers() {
        let own = json!({"type": "object", "x-guidance": {"whitespace_flexible": true}});
        assert_eq!(compact_json(&own), own);
        let plain = compact_json(&json!({"type": "integer"}));
        assert_eq!(plain["x-guidance"]["whitespace_flexible"], json!(false));
        assert_eq!(compact_json(&json!(true)), json!(true));
    }
}
