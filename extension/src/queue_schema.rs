//! The queue's schema and state transitions, hand-written SQL pulled into the extension script.
//! Version 0.1.0's files live in `extension/sql/v0.1.0/`; later versions add upgrade scripts
//! `extension/sql/pg_steadytext--A--B.sql` (see `extension/sql/README.md`).

pgrx::extension_sql_file!("../sql/v0.1.0/queue_schema.sql", name = "queue_schema");
pgrx::extension_sql_file!(
    "../sql/v0.1.0/queue_transitions.sql",
    name = "queue_transitions",
    requires = ["queue_schema", completion_wakeup::steadytext_queue_wake_waiters]
);
