//! Request validation shared by the extension (at call/enqueue time) and the daemon (on receipt),
//! so both refuse the same inputs with the same messages.

use crate::json_schema::{self, SchemaError};
use crate::limits::{
    check_max_tokens, MaxTokensError, MAX_CHUNK_TOKENS, MIN_CHUNK_TOKENS, PRIORITY_MAX,
    PRIORITY_MIN,
};

/// Why an argument of a request was refused. Messages are lower-case and name the argument or
/// the limit; the extension maps each variant to a SQLSTATE in one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// A text argument that must not be empty was empty.
    #[error("{arg} must not be empty")]
    EmptyText {
        /// SQL argument name.
        arg: &'static str,
    },
    /// A text argument that must say something was only whitespace.
    #[error("{arg} must not be blank")]
    BlankText {
        /// SQL argument name.
        arg: &'static str,
    },
    /// One element of a text array was only whitespace where that is refused.
    #[error("{arg}[{index}] must not be blank")]
    BlankElement {
        /// SQL argument name.
        arg: &'static str,
        /// 1-based position, as in SQL.
        index: usize,
    },
    /// One element of a text array was empty.
    #[error("{arg}[{index}] must not be empty")]
    EmptyElement {
        /// SQL argument name.
        arg: &'static str,
        /// 1-based position, as in SQL.
        index: usize,
    },
    /// An array argument had no elements.
    #[error("{arg} must contain at least one element")]
    EmptyArray {
        /// SQL argument name.
        arg: &'static str,
    },
    /// An array argument had more elements than allowed.
    #[error("{arg} must contain at most {max} elements, got {len}")]
    TooManyElements {
        /// SQL argument name.
        arg: &'static str,
        /// The limit.
        max: usize,
        /// What was passed.
        len: usize,
    },
    /// `max_tokens` out of range.
    #[error(transparent)]
    MaxTokens(#[from] MaxTokensError),
    /// `priority` outside [`PRIORITY_MIN`, `PRIORITY_MAX`].
    #[error("priority must be between {PRIORITY_MIN} and {PRIORITY_MAX}, got {0}")]
    Priority(i32),
    /// A `choices` list named the same choice twice.
    #[error("choices[{index}] repeats an earlier choice: {choice:?}")]
    DuplicateChoice {
        /// 1-based position of the repeat.
        index: usize,
        /// The repeated choice.
        choice: String,
    },
    /// A `schema` that is not a well-formed JSON Schema (see [`json_schema::check`]).
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A regular expression that does not parse.
    #[error("invalid regular expression in pattern: {0}")]
    Regex(String),
    /// `chunk_tokens` outside [`MIN_CHUNK_TOKENS`, `MAX_CHUNK_TOKENS`].
    #[error("chunk_tokens must be between {MIN_CHUNK_TOKENS} and {MAX_CHUNK_TOKENS}, got {0}")]
    ChunkTokens(i32),
    /// `chunk_overlap` negative or not below half of `chunk_tokens`.
    #[error("chunk_overlap must be between 0 and half of chunk_tokens ({max}), got {got}")]
    ChunkOverlap {
        /// What was passed.
        got: i32,
        /// The largest allowed.
        max: i32,
    },
}

/// Checks a chunked embedding's chunk size and overlap.
pub fn check_chunking(chunk_tokens: i32, chunk_overlap: i32) -> Result<(), InputError> {
    if !(MIN_CHUNK_TOKENS..=MAX_CHUNK_TOKENS).contains(&chunk_tokens) {
        return Err(InputError::ChunkTokens(chunk_tokens));
    }
    if chunk_overlap < 0 || chunk_overlap > chunk_tokens / 2 {
        return Err(InputError::ChunkOverlap { got: chunk_overlap, max: chunk_tokens / 2 });
    }
    Ok(())
}

/// Refuses an empty text argument.
pub fn check_text(arg: &'static str, value: &str) -> Result<(), InputError> {
    if value.is_empty() {
        Err(InputError::EmptyText { arg })
    } else {
        Ok(())
    }
}

/// Refuses an empty list, a list longer than [`crate::limits::MAX_BATCH_ITEMS`], and empty
/// elements (when `allow_empty_elements` is false).
pub fn check_texts<S: AsRef<str>>(
    arg: &'static str,
    values: &[S],
    allow_empty_elements: bool,
) -> Result<(), InputError> {
    if values.is_empty() {
        return Err(InputError::EmptyArray { arg });
    }
    if values.len() > crate::limits::MAX_BATCH_ITEMS {
        return Err(InputError::TooManyElements {
            arg,
            max: crate::limits::MAX_BATCH_ITEMS,
            len: values.len(),
        });
    }
    if !allow_empty_elements {
        if let Some(i) = values.iter().position(|v| v.as_ref().is_empty()) {
            return Err(InputError::EmptyElement { arg, index: i + 1 });
        }
    }
    Ok(())
}

/// Checks a rerank request: a query and a non-empty list of documents, none of them empty or
/// only whitespace (a blank text has no relevance to score). Every rerank path (the SQL
/// functions, the daemon, each reranker in the engine) applies this one rule.
pub fn check_rerank<S: AsRef<str>>(query: &str, documents: &[S]) -> Result<(), InputError> {
    check_text("query", query)?;
    if query.trim().is_empty() {
        return Err(InputError::BlankText { arg: "query" });
    }
    check_texts("documents", documents, false)?;
    match documents.iter().position(|d| d.as_ref().trim().is_empty()) {
        Some(i) => Err(InputError::BlankElement { arg: "documents", index: i + 1 }),
        None => Ok(()),
    }
}

/// Checks `choices`: non-empty list of non-empty, distinct strings.
pub fn check_choices<S: AsRef<str>>(choices: &[S]) -> Result<(), InputError> {
    check_texts("choices", choices, false)?;
    for (i, c) in choices.iter().enumerate() {
        if choices[..i].iter().any(|p| p.as_ref() == c.as_ref()) {
            return Err(InputError::DuplicateChoice {
                index: i + 1,
                choice: c.as_ref().to_owned(),
            });
        }
    }
    Ok(())
}

/// Checks a `max_tokens` argument (see [`check_max_tokens`]).
pub fn check_max_tokens_arg(max_tokens: i32) -> Result<u32, InputError> {
    Ok(check_max_tokens(max_tokens)?)
}

/// Checks a queue `priority`.
pub fn check_priority(priority: i32) -> Result<(), InputError> {
    if (PRIORITY_MIN..=PRIORITY_MAX).contains(&priority) {
        Ok(())
    } else {
        Err(InputError::Priority(priority))
    }
}

/// Checks that a `schema` argument is a well-formed JSON Schema document: an object or a
/// boolean whose keywords have values of the right shape, recursively ([`json_schema::check`]).
pub fn check_schema(schema: &serde_json::Value) -> Result<(), InputError> {
    Ok(json_schema::check(schema)?)
}

/// Checks that `pattern` parses as a regular expression in the syntax constrained decoding uses
/// (Rust `regex-syntax`, as llguidance). The error text is the parser's, on one line.
pub fn check_pattern(pattern: &str) -> Result<(), InputError> {
    check_text("pattern", pattern)?;
    check_regex(pattern).map_err(InputError::Regex)
}

/// Parses a regular expression in the syntax constrained decoding uses (Rust `regex-syntax`, as
/// llguidance); the error is the parser's reason, on one line.
pub(crate) fn check_regex(pattern: &str) -> Result<(), String> {
    regex_syntax::Parser::new().parse(pattern).map(|_| ()).map_err(|e| match &e {
        regex_syntax::Error::Parse(p) => p.kind().to_string(),
        regex_syntax::Error::Translate(t) => t.kind().to_string(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn texts_and_choices() {
        assert_eq!(check_text("prompt", ""), Err(InputError::EmptyText { arg: "prompt" }));
        assert!(check_text("prompt", "x").is_ok());
        let empty: [&str; 0] = [];
        assert_eq!(
            check_texts("prompts", &empty, false),
            Err(InputError::EmptyArray { arg: "prompts" })
        );
        assert_eq!(
            check_texts("prompts", &["a", ""], false).unwrap_err().to_string(),
            "prompts[2] must not be empty"
        );
        assert!(check_texts("documents", &["a", ""], true).is_ok());
        assert_eq!(
            check_choices(&["yes", "no", "yes"]).unwrap_err().to_string(),
            "choices[3] repeats an earlier choice: \"yes\""
        );
        assert!(check_choices(&["yes", "no"]).is_ok());
        let many = vec!["a"; crate::limits::MAX_BATCH_ITEMS + 1];
        assert!(matches!(
            check_texts("texts", &many, false),
            Err(InputError::TooManyElements { .. })
        ));
    }

    #[test]
    fn rerank_requests_need_words() {
        assert!(check_rerank("q", &["d"]).is_ok());
        let cases: [(&str, &[&str], &str); 5] = [
            ("", &["d"], "query must not be empty"),
            (" \n", &["d"], "query must not be blank"),
            ("q", &[], "documents must contain at least one element"),
            ("q", &["d", ""], "documents[2] must not be empty"),
            ("q", &["d", "e", "\t"], "documents[3] must not be blank"),
        ];
        for (query, documents, message) in cases {
            assert_eq!(check_rerank(query, documents).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn priority_schema_pattern() {
        assert!(check_priority(PRIORITY_MIN).is_ok() && check_priority(PRIORITY_MAX).is_ok());
        assert_eq!(check_priority(PRIORITY_MAX + 1), Err(InputError::Priority(PRIORITY_MAX + 1)));
        assert!(check_schema(&json!({"type": "object"})).is_ok());
        assert!(check_schema(&json!(true)).is_ok());
        assert_eq!(
            check_schema(&json!([1])).unwrap_err().to_string(),
            "schema must be a JSON object or boolean (a JSON Schema), got a JSON array"
        );
        assert_eq!(
            check_schema(&json!({"type": 12})).unwrap_err().to_string(),
            "schema/type must be a string or an array of strings, got a JSON number"
        );
        assert!(check_pattern("[a-z]+@[a-z]+\\.com").is_ok());
        assert_eq!(
            check_pattern("(ab").unwrap_err().to_string(),
            "invalid regular expression in pattern: unclosed group"
        );
        assert_eq!(check_pattern(""), Err(InputError::EmptyText { arg: "pattern" }));
        assert_eq!(
            check_max_tokens_arg(0).unwrap_err().to_string(),
            "max_tokens must be positive, got 0"
        );
    }
}
