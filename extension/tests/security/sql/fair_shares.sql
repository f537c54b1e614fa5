-- Fair shares: a per-role limit beside the global one, and a ceiling on the priority a role that
-- is not a superuser may ask for; both superuser-set, per role with ALTER ROLE ... SET. Replays
-- the review's one role filling the queue at priority 1000 ahead of everyone.
SELECT current_user AS superuser \gset
SELECT steadytext_version() IS NOT NULL AS loaded;
TRUNCATE steadytext_queue;
-- ordinary roles cannot lift them
SET ROLE regress_alice;
SELECT stmt, sqlstate_of(stmt) AS outcome FROM (VALUES
    ($$SET steadytext.max_queue_size_per_role = 0$$),
    ($$SET steadytext.max_priority = 1000$$),
    ($$SET steadytext.max_queue_size = 100000000$$)
) AS t(stmt);
RESET ROLE;
-- out of range
SELECT sqlstate_of($$SET steadytext.max_priority = 1001$$) AS above,
       sqlstate_of($$SET steadytext.max_queue_size_per_role = -1$$) AS negative;
ALTER ROLE regress_alice SET steadytext.max_queue_size_per_role = 3;
ALTER ROLE regress_alice SET steadytext.max_priority = 10;
\c - regress_alice
-- setting them before the library is loaded does not help: the value is discarded at the load
SET steadytext.max_priority = 1000;
SELECT steadytext_generate_async('urgent', 8, priority => 1000);
SHOW steadytext.max_queue_size_per_role;
SHOW steadytext.max_priority;
SELECT steadytext_generate_async('urgent', 8, priority => 1000);
SELECT steadytext_generate_async('urgent', 8, priority => 11);
SELECT steadytext_generate_async('a', 8, priority => 10) AS a1 \gset
SELECT cardinality(steadytext_generate_batch_async(ARRAY['b', 'c'], 8)) AS enqueued;
SELECT steadytext_generate_async('d', 8);
SELECT steadytext_embed_batch_async(ARRAY['e', 'f']);
-- a request that finishes frees its room
SELECT steadytext_cancel_async(:'a1') AS cancelled;
SELECT steadytext_embed_async('g') IS NOT NULL AS enqueued;
-- another role is not held back by alice's share, and has the whole range
\c - regress_bob
SELECT steadytext_generate_async('bob', 8, priority => 1000) IS NOT NULL AS enqueued;
-- superusers are not bound by the ceiling
\c - :superuser
SET steadytext.max_priority = -1000;
SELECT steadytext_generate_async('admin', 8, priority => 1000) IS NOT NULL AS enqueued;
RESET steadytext.max_priority;
SELECT owner, count(*), max(priority) FROM steadytext_queue WHERE status = 'pending'
GROUP BY owner ORDER BY owner::text;
ALTER ROLE regress_alice RESET ALL;
