-- DROP EXTENSION removes the queue; CREATE EXTENSION again works, reusing the cluster-wide
-- steadytext_worker role (which DROP EXTENSION leaves behind).
SELECT steadytext_generate_async('dropped with the extension') IS NOT NULL AS queued;
DROP EXTENSION pg_steadytext;
SELECT to_regclass('steadytext_queue') AS queue, to_regclass('steadytext_workers') AS workers;
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = 'steadytext_worker';
CREATE EXTENSION pg_steadytext;
SELECT count(*) AS requests FROM steadytext_queue;
SELECT pg_has_role('regress_worker', 'steadytext_worker', 'MEMBER') AS worker_still_member;
-- the extension's objects belong to it (pg_dump leaves them to CREATE EXTENSION)
SELECT classid::regclass AS catalog, count(*) FROM pg_depend
WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_steadytext') AND deptype = 'e'
GROUP BY classid ORDER BY classid::regclass::text;
