//! Which SQL function a request is for: the leaf type the queue's payload
//! ([`crate::queue_request`]) and the wire bodies ([`crate::wire`]) both name it by, so neither
//! depends on the other for it.

use serde::{Deserialize, Serialize};

/// The SQL function a queued request is for; its [`Function::sql_name`] is the value of
/// `steadytext_queue.function_name` (the table's CHECK lists exactly [`Function::ALL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Function {
    /// `steadytext_generate`: free text.
    Generate,
    /// `steadytext_embed`: one embedding.
    Embed,
    /// `steadytext_generate_json`: JSON valid against a schema.
    GenerateJson,
    /// `steadytext_generate_regex`: text matching a regular expression.
    GenerateRegex,
    /// `steadytext_generate_choice`: exactly one of a list of choices.
    GenerateChoice,
    /// `steadytext_rerank`: documents scored against a query.
    Rerank,
    /// A chunked embedding (a derivation's `embed_chunks`): a text split into chunks of the
    /// embedding model's tokens, each embedded.
    EmbedChunks,
}

impl Function {
    /// Every function, in the order of the table's CHECK list.
    pub const ALL: [Function; 7] = [
        Function::Generate,
        Function::Embed,
        Function::GenerateJson,
        Function::GenerateRegex,
        Function::GenerateChoice,
        Function::Rerank,
        Function::EmbedChunks,
    ];

    /// The name stored in `steadytext_queue.function_name` and sent in notifications.
    pub fn sql_name(self) -> &'static str {
        match self {
            Function::Generate => "generate",
            Function::Embed => "embed",
            Function::GenerateJson => "generate_json",
            Function::GenerateRegex => "generate_regex",
            Function::GenerateChoice => "generate_choice",
            Function::Rerank => "rerank",
            Function::EmbedChunks => "embed_chunks",
        }
    }

    /// The function stored under `name`, if any.
    pub fn from_sql_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.sql_name() == name)
    }
}

impl std::fmt::Display for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.sql_name())
    }
}
