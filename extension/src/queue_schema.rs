//! The queue's schema and state transitions, hand-written SQL pulled into the extension script.
//! Version 0.1.0's files live in `extension/sql/v0.1.0/`, 0.2.0's additions in
//! `extension/sql/v0.2.0/` and again in the upgrade script
//! `extension/sql/pg_steadytext--0.1.0--0.2.0.sql` (see `extension/sql/README.md`).

pgrx::extension_sql_file!("../sql/v0.1.0/queue_schema.sql", name = "queue_schema");
pgrx::extension_sql_file!(
    "../sql/v0.2.0/dumped_tables.sql",
    name = "dumped_tables",
    requires = ["queue_schema"]
);
pgrx::extension_sql_file!(
    "../sql/v0.2.0/result_compression.sql",
    name = "result_compression",
    requires = ["queue_schema", "result_cache"]
);
pgrx::extension_sql_file!(
    "../sql/v0.1.0/queue_transitions.sql",
    name = "queue_transitions",
    requires = ["queue_schema", completion_wakeup::steadytext_queue_wake_waiters]
);
pgrx::extension_sql_file!(
    "../sql/v0.2.0/claim_costs.sql",
    name = "claim_costs",
    requires = ["queue_transitions"]
);
pgrx::extension_sql_file!(
    "../sql/v0.2.0/derivations.sql",
    name = "derivations",
    requires = [
        "queue_transitions",
        derivation_rights::steadytext_derivation_run_as,
        derivation_rights::steadytext_derivation_written_column,
        derivation_rights::steadytext_derivation_check_request
    ]
);
pgrx::extension_sql_file!(
    "../sql/v0.2.0/derivation_completion.sql",
    name = "derivation_completion",
    requires = ["derivations"]
);
pgrx::extension_sql_file!(
    "../sql/v0.2.0/dashboard.sql",
    name = "dashboard",
    requires = ["derivation_completion"]
);
