//! The SQL functions users declare and manage derivations with: `steadytext_derive`,
//! `steadytext_derivation_pause`, `_resume`, `_rederive` and `_drop`.
//!
//! Each one learns who calls it (`current_user`), checks what must be checked with the caller's
//! own rights (the input expression parses, reads only columns the caller may read, calls no
//! volatile function), then does the rest as the queue's owner through the SQL functions of
//! `extension/sql/v0.2.0/derivations.sql`, naming the caller as the declarer. A SQL function
//! cannot learn its caller from inside a SECURITY DEFINER function, which is why these are Rust.

use pgrx::prelude::*;
use pgrx::{JsonB, PgRelation};

use steadytext_api::limits::DEFAULT_SEED;
use steadytext_api::wire::EmbedBody;

use crate::error::{or_raise, required, SqlError};
use crate::{daemon, ext_schema, queue_owner};

/// The temporary view the input expression is checked through (in the caller's own pg_temp).
const PROBE: &str = "pg_temp.steadytext_derive_probe";

/// What PostgreSQL's own analysis of the input expression says about it.
struct Probe {
    /// The source's columns it reads.
    columns: Vec<String>,
}

/// Checks that `input` is one SQL expression and nothing else (no second statement, no FROM,
/// no alias, nothing a parenthesis could leave open), with PostgreSQL's own parser in the mode
/// PL/pgSQL parses its expressions with. The input is then always embedded as `(input\n)`, so
/// a trailing `--` comment ends at the newline.
fn check_expression(input: &str) -> Result<(), SqlError> {
    let text = std::ffi::CString::new(input).map_err(|_| SqlError::NotAnExpression)?;
    // SAFETY: raw_parser reads the NUL-terminated string and returns a palloc'd parse tree (or
    // raises a syntax error); the nodes read below are the ones that mode produces.
    let single = unsafe {
        let list = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_PLPGSQL_EXPR);
        if list.is_null() || (*list).length != 1 {
            false
        } else {
            let raw = (*(*list).elements).ptr_value as *mut pg_sys::RawStmt;
            let stmt = (*raw).stmt;
            if stmt.is_null() || (*stmt).type_ != pg_sys::NodeTag::T_SelectStmt {
                false
            } else {
                let select = stmt as *mut pg_sys::SelectStmt;
                let s = &*select;
                let target_is_bare = !s.targetList.is_null() && (*s.targetList).length == 1 && {
                    let target = (*(*s.targetList).elements).ptr_value as *mut pg_sys::ResTarget;
                    (*target).name.is_null()
                };
                target_is_bare
                    && s.distinctClause.is_null()
                    && s.intoClause.is_null()
                    && s.fromClause.is_null()
                    && s.whereClause.is_null()
                    && s.groupClause.is_null()
                    && s.havingClause.is_null()
                    && s.windowClause.is_null()
                    && s.valuesLists.is_null()
                    && s.sortClause.is_null()
                    && s.limitOffset.is_null()
                    && s.limitCount.is_null()
                    && s.lockingClause.is_null()
                    && s.withClause.is_null()
                    && s.op == pg_sys::SetOperation::SETOP_NONE
            }
        }
    };
    if single {
        Ok(())
    } else {
        Err(SqlError::NotAnExpression)
    }
}

/// Parses `input` over `source` as the caller, through a temporary view, and returns the
/// columns it reads: PostgreSQL reports a syntax error, a missing column or function, and (by
/// reading the view with LIMIT 0) a column the caller may not read, each with its own SQLSTATE.
fn probe(source: pg_sys::Oid, input: &str) -> Result<Probe, SqlError> {
    let table = Spi::get_one_with_args::<String>("SELECT $1::regclass::text", &[source.into()])?
        .ok_or(SqlError::Null("source"))?;
    let create = format!(
        "CREATE TEMP VIEW steadytext_derive_probe AS \
         SELECT ({input}\n)::text AS steadytext_input FROM {table} AS t"
    );
    Spi::connect_mut(|client| {
        // prepared: the text must be exactly one statement
        let plan = client.prepare_mut(&create, &[])?;
        client.update(&plan, None, &[])?;
        client.update(&format!("SELECT steadytext_input FROM {PROBE} LIMIT 0"), None, &[])?;
        Ok::<_, SqlError>(())
    })?;
    // the view depends on each column the expression reads (and on the table as a whole,
    // refobjsubid 0, which tells nothing) and on each function it calls
    let deps = format!(
        "SELECT a.attname::text AS column_read, \
                CASE WHEN p.provolatile = 'v' THEN p.oid::regprocedure::text END AS volatile_call \
         FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid \
         LEFT JOIN pg_attribute a ON d.refclassid = 'pg_class'::regclass AND a.attrelid = d.refobjid \
                               AND a.attnum = d.refobjsubid \
         LEFT JOIN pg_proc p ON d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid \
         WHERE r.ev_class = '{PROBE}'::regclass \
           AND (d.refclassid = 'pg_class'::regclass AND d.refobjid = $1 AND d.refobjsubid > 0 \
                OR d.refclassid = 'pg_proc'::regclass)"
    );
    let mut columns = Vec::new();
    let mut volatile = Vec::new();
    Spi::connect(|client| {
        for row in client.select(&deps, None, &[source.into()])? {
            columns.extend(row.get::<String>(1)?);
            volatile.extend(row.get::<String>(2)?);
        }
        Ok::<_, SqlError>(())
    })?;
    Spi::run(&format!("DROP VIEW {PROBE}"))?;
    if !volatile.is_empty() {
        volatile.sort();
        volatile.dedup();
        return Err(SqlError::VolatileInput(volatile.join(", ")));
    }
    columns.sort();
    columns.dedup();
    Ok(Probe { columns })
}

/// For an embedding into a `vector(n)` column: checks `n` against the embedding model's
/// dimension, asked of the daemon (one embedding of a probe text, a cache hit after the first).
/// A daemon that cannot be reached is no reason to refuse the declaration: a WARNING says the
/// dimension was not checked, and a mismatch would show on each row's error.
fn check_vector_dimensions(
    source: pg_sys::Oid,
    destination: &str,
    kind: &str,
) -> Result<(), SqlError> {
    if kind != "embed" {
        return Ok(());
    }
    let declared = Spi::get_one_with_args::<i32>(
        "SELECT max(a.atttypmod) FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
         WHERE a.attrelid = $1 AND a.attname = $2 AND t.typname = 'vector' AND a.atttypmod > 0",
        &[source.into(), destination.into()],
    )?;
    let Some(declared) = declared else { return Ok(()) };
    let body = EmbedBody {
        texts: vec!["dimension probe".to_owned()],
        use_cache: true,
        seed: DEFAULT_SEED,
    };
    match daemon::call(move |c| c.embed(&body)) {
        Ok(reply) => {
            let model = reply.embeddings.first().map_or(0, Vec::len);
            if model as i32 != declared {
                return Err(SqlError::VectorDimensions {
                    column: destination.to_owned(),
                    declared,
                    model,
                });
            }
        }
        Err(e) => {
            pgrx::warning!(
                "the dimension of \"{destination}\" (vector({declared})) was not checked against the \
                 embedding model: {e}"
            );
        }
    }
    Ok(())
}

/// Declares a derivation: keeps column `destination` of `source` equal to `kind` applied to
/// `input`, an SQL expression over the row's columns (e.g. `title || E'\n\n' || body`; name
/// functions with their schema). `kind`: embed (destination real[] or vector), generate,
/// generate_json (text or jsonb), generate_regex, generate_choice (text). `options`: the kind's
/// arguments (max_tokens, seed, use_cache, schema, pattern, choices) and priority (0) and
/// backfill_priority (-100). Rows already in the table are enqueued by the workers in batches.
/// Returns the derivation's id.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_derive(
    source: Option<PgRelation>,
    destination: Option<&str>,
    input: Option<&str>,
    kind: default!(Option<&str>, "'embed'"),
    options: default!(Option<JsonB>, "'{}'"),
) -> i64 {
    or_raise((|| {
        let source = required("source", source)?.oid();
        let destination = required("destination", destination)?;
        let input = required("input", input)?;
        let kind = required("kind", kind)?;
        let JsonB(options) = required("options", options)?;
        if input.trim().is_empty() {
            return Err(SqlError::EmptyInput);
        }
        check_expression(input)?;
        let caller = queue_owner::caller();
        let probe = probe(source, input)?;
        check_vector_dimensions(source, destination, kind)?;
        let id = call_as_owner::<i64>(
            "steadytext_derivation_declare",
            "$1::regrole, $2::regclass, $3::name, $4, $5::text[]::name[], $6, $7",
            &[
                caller.into(),
                source.into(),
                destination.into(),
                input.into(),
                probe.columns.into(),
                kind.into(),
                JsonB(options).into(),
            ],
        )?;
        id.ok_or(SqlError::Null("id"))
    })())
}

/// Calls the extension's SQL function `function` as the queue's owner with `args` (`arg_sql`
/// spells the arguments with their casts: `$1::regrole, …`) and returns its value.
fn call_as_owner<T: FromDatum + IntoDatum>(
    function: &str,
    arg_sql: &str,
    args: &[pgrx::datum::DatumWithOid],
) -> Result<Option<T>, SqlError> {
    let sql = format!("SELECT {}({arg_sql})", ext_schema::qualified(function)?);
    queue_owner::run_as_owner(ext_schema::queue_table()?, || {
        Spi::connect_mut(|client| {
            Ok(client.update(sql.as_str(), None, args)?.first().get_one::<T>()?)
        })
    })
}

/// Runs `action` on the derivation of `destination` on `source` as the queue's owner, for the
/// caller (its declarer, a member of the declarer's role, or a superuser).
fn manage(source: Option<PgRelation>, destination: Option<&str>, action: &str) -> bool {
    or_raise((|| {
        let source = required("source", source)?.oid();
        let destination = required("destination", destination)?;
        let caller = queue_owner::caller();
        let done = call_as_owner::<bool>(
            "steadytext_derivation_manage",
            "$1::regrole, $2::regclass, $3::name, $4",
            &[caller.into(), source.into(), destination.into(), action.into()],
        )?;
        Ok(done.unwrap_or(false))
    })())
}

/// Pauses the derivation of `destination` on `source`: changes are recorded, nothing is
/// enqueued, and what is pending is cancelled. Returns true.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_derivation_pause(source: Option<PgRelation>, destination: Option<&str>) -> bool {
    manage(source, destination, "pause")
}

/// Resumes a paused derivation: every row that is not in sync is enqueued (the workers walk the
/// source), and changes enqueue again. Returns true.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_derivation_resume(source: Option<PgRelation>, destination: Option<&str>) -> bool {
    manage(source, destination, "resume")
}

/// Derives every row again (e.g. after a model change): what is pending is cancelled, errors are
/// cleared, and the workers walk the whole source. Returns true.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_derivation_rederive(source: Option<PgRelation>, destination: Option<&str>) -> bool {
    manage(source, destination, "rederive")
}

/// Drops the derivation of `destination` on `source`: what is pending is cancelled, its
/// triggers and bookkeeping are dropped, and the destination keeps its values. Returns true.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_derivation_drop(source: Option<PgRelation>, destination: Option<&str>) -> bool {
    manage(source, destination, "drop")
}
