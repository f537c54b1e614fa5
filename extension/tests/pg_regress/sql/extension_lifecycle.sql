-- DROP EXTENSION removes the queue; CREATE EXTENSION again works, reusing the cluster-wide
-- steadytext_worker role (which DROP EXTENSION leaves behind).
SELECT steadytext_generate_async('dropped with the extension') IS NOT NULL AS queued;
DROP EXTENSION pg_steadytext;
SELECT to_regclass('steadytext_queue') AS queue, to_regclass('steadytext_workers') AS workers;
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = 'steadytext_worker';
CREATE EXTENSION pg_steadytext;
SELECT count(*) AS requests FROM steadytext_queue;
-- a fresh installation has exactly the objects of the one setup.sql upgraded from 0.1.0
SELECT side, object FROM (
    SELECT 'only upgraded' AS side, * FROM (
        SELECT * FROM upgraded_extension EXCEPT SELECT * FROM extension_objects()) AS u
    UNION ALL
    SELECT 'only fresh', * FROM (
        SELECT * FROM extension_objects() EXCEPT SELECT * FROM upgraded_extension) AS f) AS d
ORDER BY object, side;
SELECT pg_has_role('regress_worker', 'steadytext_worker', 'MEMBER') AS worker_still_member;
-- the extension's objects belong to it (pg_dump leaves them to CREATE EXTENSION)
SELECT classid::regclass AS catalog, count(*) FROM pg_depend
WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_steadytext') AND deptype = 'e'
GROUP BY classid ORDER BY classid::regclass::text;
