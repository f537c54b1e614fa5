//! Every SQL statement the binary sends to PostgreSQL, in one place (the queue worker's, the
//! purge's, the settings' and the shared result cache's), but the dashboard's reads and actions
//! (`ui/data.rs`).
//!
//! A session first pins its `search_path` to `pg_catalog, pg_temp` and finds the schema
//! pg_steadytext is installed in ([`Statements::for_session`]); every statement then names the
//! extension's functions and tables through that schema. So nothing another role creates in a
//! schema the worker's role would search (functions, operators or tables named like the ones
//! called here, CVE-2018-1058) ever runs with the worker's rights — which are a superuser's when
//! the worker connects as `postgres`.
//!
//! The statements are prepared once per session: each call is then one round trip (bind and
//! execute) instead of two (a parse of the text first), and PostgreSQL parses each statement
//! once per connection, not once per call (measured before: an idle worker's log showed a new
//! named statement for every poll).

use tokio_postgres::{Client, Statement};

use crate::error::DaemonError;

/// The statements of one session, with the extension's schema written in: their text
/// (`Statements<String>`), or prepared on the session's connection (`Statements`, what
/// [`Statements::for_session`] returns).
#[derive(Debug, Clone)]
pub struct Statements<S = Statement> {
    /// Fails requests whose lease expired: `$1` the worker's retry limit.
    pub rescue_expired: S,
    /// Gives back what an earlier session of worker `$1` still holds; one row per request.
    pub release_orphans: S,
    /// Heartbeat of worker `$1` on host `$2`, pid `$3`, lease `$4` (text interval), status `$5`.
    pub heartbeat: S,
    /// The same with the worker's slots `$6` and models `$7`; None on a session whose
    /// extension predates them (0.1.0).
    pub heartbeat_reports: Option<S>,
    /// Claims up to `$2` requests for worker `$1` with lease `$3` (text interval): request_id
    /// (text), function_name, parameters (text), priority.
    pub claim: S,
    /// The same while the requests' costs fit in `$2`, an embedding costing 1 and any other
    /// request `$4`; None on a session whose extension predates it (0.1.0).
    pub claim_costed: Option<S>,
    /// Fails request `$1` (text uuid) of worker `$2` for good with error `$3`.
    pub fail_for_good: S,
    /// Fails request `$1` (text uuid) of worker `$2` with error `$3`, retryable `$4`, the worker's
    /// retry limit `$5`; returns the new status or NULL.
    pub fail: S,
    /// Completes requests `$2` (text[] of uuids) of worker `$1` with results `$3`.
    pub complete_many: S,
    /// Whether request `$1` (text uuid) is still processing under worker `$2`'s lease.
    pub still_running: S,
    /// Seconds until the earliest pending request is due (negative: due now; NULL: none
    /// pending), for an idle worker's next poll.
    pub next_due: S,
    /// Deletes up to `$2` requests finished more than `$1` (text interval) ago.
    pub purge: S,
    /// The shared cache's results for keys `$1`: cache_key, result.
    pub cache_get: S,
    /// Stores results `$2` under keys `$1` in the shared cache.
    pub cache_put: S,
    /// Evicts up to `$1` entries beyond the shared cache's configured bounds.
    pub cache_evict: S,
    /// Whether this daemon is to run the shared cache's eviction now (`$1`: the interval
    /// between runs, as text such as `60 seconds`); true for one caller per interval across all
    /// daemons.
    pub cache_evict_due: S,
    /// The worker settings' GUCs `$1`..`$5`, each as `current_setting` prints it (NULL if
    /// unset), and the ids of the workers running with a heartbeat within `$6` (text interval).
    pub settings: S,
    /// Walks the next batch of at most `$1` source rows of a derivation; NULL when no derivation
    /// is walking (see `worker::derivation_walk`). None on a session whose extension predates
    /// derivations (0.1.0, before `ALTER EXTENSION pg_steadytext UPDATE`).
    pub walk: Option<S>,
}

/// The extension's schema, quoted as an identifier where needed.
const FIND_SCHEMA: &str = "SELECT quote_ident(n.nspname) \
    FROM pg_extension e JOIN pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace \
    WHERE e.extname OPERATOR(pg_catalog.=) 'pg_steadytext'";

/// Pins the session's `search_path` to `pg_catalog, pg_temp` and returns the schema
/// pg_steadytext is installed in, quoted as an identifier (an error if it is not installed):
/// every statement of the binary names the extension's objects through it.
pub async fn pin_session(client: &Client) -> Result<String, DaemonError> {
    client.batch_execute("SET search_path = pg_catalog, pg_temp").await?;
    let row = client.query_opt(FIND_SCHEMA, &[]).await?;
    Ok(row.ok_or(DaemonError::ExtensionMissing)?.get(0))
}

impl Statements {
    /// Pins the session ([`pin_session`]) and returns the statements for the extension's schema,
    /// prepared on `client`.
    pub async fn for_session(client: &Client) -> Result<Self, DaemonError> {
        let schema = pin_session(client).await?;
        let text = Statements::in_schema(&schema);
        Ok(Self {
            rescue_expired: client.prepare(&text.rescue_expired).await?,
            release_orphans: client.prepare(&text.release_orphans).await?,
            heartbeat: client.prepare(&text.heartbeat).await?,
            heartbeat_reports: match &text.heartbeat_reports {
                Some(reports) => client.prepare(reports).await.ok(),
                None => None,
            },
            claim: client.prepare(&text.claim).await?,
            claim_costed: match &text.claim_costed {
                Some(costed) => client.prepare(costed).await.ok(),
                None => None,
            },
            fail_for_good: client.prepare(&text.fail_for_good).await?,
            fail: client.prepare(&text.fail).await?,
            complete_many: client.prepare(&text.complete_many).await?,
            still_running: client.prepare(&text.still_running).await?,
            next_due: client.prepare(&text.next_due).await?,
            purge: client.prepare(&text.purge).await?,
            cache_get: client.prepare(&text.cache_get).await?,
            cache_put: client.prepare(&text.cache_put).await?,
            cache_evict: client.prepare(&text.cache_evict).await?,
            cache_evict_due: client.prepare(&text.cache_evict_due).await?,
            settings: client.prepare(&text.settings).await?,
            walk: match &text.walk {
                Some(walk) => client.prepare(walk).await.ok(),
                None => None,
            },
        })
    }
}

impl Statements<String> {
    /// The statements' text for the extension in `schema` (already quoted).
    fn in_schema(s: &str) -> Self {
        Self {
            rescue_expired: format!(
                "SELECT {s}.steadytext_queue_rescue_expired(retry_limit => $1)"
            ),
            release_orphans: format!(
                "SELECT {s}.steadytext_queue_fail(request_id, $1,
                        'worker ' || $1 || ' lost the attempt (connection or process restart)',
                        true, interval '0')
                 FROM {s}.steadytext_queue WHERE status = 'processing' AND worker_id = $1"
            ),
            heartbeat: format!(
                "SELECT {s}.steadytext_worker_heartbeat($1, $2, $3, $4::text::interval, $5)"
            ),
            heartbeat_reports: Some(format!(
                "SELECT {s}.steadytext_worker_heartbeat($1, $2, $3, $4::text::interval, $5, \
                        $6::integer, $7::text)"
            )),
            claim: format!(
                "SELECT request_id::text, function_name, parameters::text, priority \
                 FROM {s}.steadytext_queue_claim($1, $2, $3::text::interval)"
            ),
            claim_costed: Some(format!(
                "SELECT request_id::text, function_name, parameters::text, priority \
                 FROM {s}.steadytext_queue_claim($1, $2, $3::text::interval, $4)"
            )),
            fail_for_good: format!(
                "SELECT {s}.steadytext_queue_fail($1::text::uuid, $2, $3, false)"
            ),
            fail: format!(
                "SELECT {s}.steadytext_queue_fail($1::text::uuid, $2, $3, $4, retry_limit => $5)"
            ),
            complete_many: format!(
                "SELECT {s}.steadytext_queue_complete_many($1, $2::text[]::uuid[], $3)"
            ),
            still_running: format!(
                "SELECT EXISTS (SELECT FROM {s}.steadytext_queue \
                 WHERE request_id = $1::text::uuid AND status = 'processing' AND worker_id = $2)"
            ),
            next_due: format!(
                "SELECT extract(epoch FROM min(next_attempt_at) - now())::float8 \
                 FROM {s}.steadytext_queue WHERE status = 'pending'"
            ),
            purge: format!("SELECT {s}.steadytext_queue_purge($1::text::interval, $2)"),
            cache_get: format!("SELECT cache_key, result FROM {s}.steadytext_result_cache_get($1)"),
            cache_put: format!("SELECT {s}.steadytext_result_cache_put($1, $2)"),
            cache_evict: format!(
                "SELECT {s}.steadytext_result_cache_evict(l.max_entries, l.max_age, $1) \
                 FROM {s}.steadytext_result_cache_limits() l"
            ),
            cache_evict_due: format!(
                "SELECT {s}.steadytext_result_cache_evict_due($1::text::interval)"
            ),
            settings: format!(
                "SELECT current_setting($1, true), current_setting($2, true), \
                        current_setting($3, true), current_setting($4, true), \
                        current_setting($5, true), \
                        ARRAY(SELECT worker_id FROM {s}.steadytext_workers \
                              WHERE status = 'running' \
                                AND last_heartbeat > now() - $6::text::interval \
                              ORDER BY worker_id COLLATE \"C\")"
            ),
            walk: Some(format!("SELECT {s}.steadytext_derivation_walk($1)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every statement that names one of the extension's objects names it through the schema.
    #[test]
    fn extension_objects_are_qualified() {
        let sql = Statements::in_schema("\"My Schema\"");
        let all = [
            &sql.rescue_expired,
            &sql.release_orphans,
            &sql.heartbeat,
            &sql.claim,
            sql.claim_costed.as_ref().unwrap(),
            &sql.fail_for_good,
            &sql.fail,
            &sql.complete_many,
            &sql.still_running,
            &sql.next_due,
            &sql.purge,
            &sql.cache_get,
            &sql.cache_put,
            &sql.cache_evict,
            &sql.cache_evict_due,
            sql.walk.as_ref().unwrap(),
        ];
        for statement in all {
            let mut rest = statement.as_str();
            let mut named = 0;
            while let Some(at) = rest.find("steadytext_") {
                assert!(
                    rest[..at].ends_with("\"My Schema\"."),
                    "unqualified extension object in {statement}"
                );
                named += 1;
                rest = &rest[at + "steadytext_".len()..];
            }
            assert!(named > 0, "{statement}");
        }
    }
}
