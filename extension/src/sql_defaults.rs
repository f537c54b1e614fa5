//! The SQL defaults of the functions' arguments. pgrx's `default!` needs each as a literal, so
//! they are spelled where the functions are declared; the test here checks every spelling, as
//! PostgreSQL reports it, against the one declaration in `steadytext-api`.

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;
    use steadytext_api::limits::{DEFAULT_MAX_TOKENS, DEFAULT_SEED};
    use steadytext_api::wire::DEFAULT_RERANK_TASK;

    /// Every default of every steadytext function equals the shared constant of its argument.
    #[pg_test]
    fn defaults_match_the_shared_constants() {
        let expected = [
            ("max_tokens", DEFAULT_MAX_TOKENS.to_string()),
            ("seed", DEFAULT_SEED.to_string()),
            ("task", format!("'{DEFAULT_RERANK_TASK}'::text")),
        ];
        let signatures = Spi::connect(|client| {
            client
                .select(
                    "SELECT p.proname::text, pg_get_function_arguments(p.oid)
                     FROM pg_proc p WHERE p.proname LIKE 'steadytext\\_%'",
                    None,
                    &[],
                )?
                .map(|row| Ok((row.get::<String>(1)?.unwrap(), row.get::<String>(2)?.unwrap())))
                .collect::<Result<Vec<(String, String)>, pgrx::spi::Error>>()
        })
        .unwrap();
        let mut checked = 0;
        for (function, arguments) in &signatures {
            // an argument starts the list or follows ", "; defaults may contain ", " themselves
            for (name, value) in &expected {
                let starts = std::iter::once(0)
                    .chain(arguments.match_indices(", ").map(|(i, _)| i + 2))
                    .filter(|&i| arguments[i..].starts_with(&format!("{name} ")));
                for start in starts {
                    let rest = &arguments[start..];
                    let Some(at) = rest.find(" DEFAULT ") else { continue };
                    if rest[..at].contains(", ") {
                        continue; // no default of its own: that DEFAULT is a later argument's
                    }
                    let default = &rest[at + " DEFAULT ".len()..];
                    let end = default.starts_with(value.as_str())
                        && matches!(default[value.len()..].chars().next(), None | Some(','));
                    assert!(end, "{function}({name}): DEFAULT {default:?}, expected {value:?}");
                    checked += 1;
                }
            }
        }
        // max_tokens ×9, seed ×12, task ×2 when this was written: the check saw them all
        assert!(checked >= 23, "only {checked} defaults found in {signatures:?}");
    }
}
