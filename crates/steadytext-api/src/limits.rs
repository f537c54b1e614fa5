//! Input limits enforced identically by the extension (at enqueue / call time) and the daemon.

/// Largest `max_tokens` a request may ask for.
pub const MAX_TOKENS_LIMIT: i32 = 4096;

/// Default `max_tokens` of the generation functions.
pub const DEFAULT_MAX_TOKENS: i32 = 512;

/// Default seed of every function (greedy decoding does not consume it; it is part of a
/// request's identity).
pub const DEFAULT_SEED: i32 = 42;

/// Lowest queue priority an asynchronous request may ask for.
pub const PRIORITY_MIN: i32 = -1000;

/// Highest queue priority an asynchronous request may ask for (higher runs first; default 0).
pub const PRIORITY_MAX: i32 = 1000;

/// Default size of a chunked embedding's chunks, in the embedding model's tokens.
pub const DEFAULT_CHUNK_TOKENS: i32 = 256;

/// Default overlap of consecutive chunks of a chunked embedding, in tokens.
pub const DEFAULT_CHUNK_OVERLAP: i32 = 32;

/// Smallest chunk size a chunked embedding accepts, in tokens.
pub const MIN_CHUNK_TOKENS: i32 = 16;

/// Largest chunk size a chunked embedding accepts, in tokens (the embedding model embeds at most
/// this many whole; a smaller model limit applies on top).
pub const MAX_CHUNK_TOKENS: i32 = 510;

/// Most items one batch call (prompts, texts, documents, choices) may carry.
pub const MAX_BATCH_ITEMS: usize = 10_000;

/// Why a `max_tokens` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaxTokensError {
    /// Zero or negative.
    #[error("max_tokens must be positive, got {0}")]
    NotPositive(i32),
    /// Above [`MAX_TOKENS_LIMIT`].
    #[error("max_tokens must be at most {MAX_TOKENS_LIMIT}, got {0}")]
    TooLarge(i32),
}

/// Checks a `max_tokens` argument against the shared limits.
pub fn check_max_tokens(max_tokens: i32) -> Result<u32, MaxTokensError> {
    if max_tokens <= 0 {
        Err(MaxTokensError::NotPositive(max_tokens))
    } else if max_tokens > MAX_TOKENS_LIMIT {
        Err(MaxTokensError::TooLarge(max_tokens))
    } else {
        Ok(max_tokens as u32)
    }
}

/// Largest HTTP request body the daemon reads (2 MiB); a larger one is refused with status 413
/// (limit exceeded) naming this limit.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_tokens_bounds() {
        assert_eq!(check_max_tokens(0), Err(MaxTokensError::NotPositive(0)));
        assert_eq!(check_max_tokens(-5), Err(MaxTokensError::NotPositive(-5)));
        assert_eq!(check_max_tokens(1), Ok(1));
        assert_eq!(check_max_tokens(MAX_TOKENS_LIMIT), Ok(MAX_TOKENS_LIMIT as u32));
        assert_eq!(
            check_max_tokens(MAX_TOKENS_LIMIT + 1),
            Err(MaxTokensError::TooLarge(MAX_TOKENS_LIMIT + 1))
        );
        assert_eq!(
            check_max_tokens(5000).unwrap_err().to_string(),
            "max_tokens must be at most 4096, got 5000"
        );
    }
}
