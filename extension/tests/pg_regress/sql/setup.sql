-- run once after the regression database is (re)created. The suite runs on an upgraded
-- installation: the first released version (0.1.0, its script frozen in extension/sql/released/)
-- with requests enqueued, then ALTER EXTENSION UPDATE to the version being built; those requests
-- complete afterwards (below), and extension_lifecycle.sql checks that a fresh CREATE EXTENSION
-- has exactly the objects of this upgraded one.
CREATE EXTENSION pg_steadytext VERSION '0.1.0';
SELECT count(steadytext_generate_async('enqueued under 0.1.0, request ' || i, 4)) AS enqueued
FROM generate_series(1, 2) AS i;
ALTER EXTENSION pg_steadytext UPDATE;
SELECT extversion = steadytext_version() AS updated_to_the_library_version
FROM pg_extension WHERE extname = 'pg_steadytext';
-- sqlstate_of(statement): runs it and shows 'ok' or 'SQLSTATE: message' (uuids masked), so error
-- tables show each error's code (query_canceled included, for statement_timeout tests).
CREATE FUNCTION sqlstate_of(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS OR query_canceled THEN
    RETURN regexp_replace(SQLSTATE || ': ' || SQLERRM,
                          '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g');
END
$$;
GRANT EXECUTE ON FUNCTION sqlstate_of(text) TO PUBLIC;
-- roles of the security tests: two users and a worker
CREATE ROLE regress_alice;
CREATE ROLE regress_bob;
CREATE ROLE regress_worker IN ROLE steadytext_worker;
-- the requests enqueued under 0.1.0 complete through the updated transition functions
SET ROLE regress_worker;
SELECT count(*) AS claimed FROM steadytext_queue_claim('regress-upgrade', 10);
SELECT bool_and(steadytext_queue_complete(request_id, 'regress-upgrade',
                                          'done: ' || (parameters ->> 'prompt')))
       AS completed
FROM steadytext_queue WHERE worker_id = 'regress-upgrade';
RESET ROLE;
SELECT steadytext_get_async_result(request_id) AS result
FROM steadytext_queue ORDER BY parameters ->> 'prompt';
TRUNCATE steadytext_queue;
-- extension_objects(): every object of the extension with what defines it (functions with their
-- source, settings and grants; relations with columns, constraints, indexes, policies,
-- triggers, grants; the tables pg_dump dumps), to compare installations
CREATE FUNCTION extension_objects() RETURNS TABLE (object text, definition text)
LANGUAGE sql STABLE AS $$
WITH members AS (
    SELECT d.classid, d.objid FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid
    WHERE e.extname = 'pg_steadytext' AND d.refclassid = 'pg_extension'::regclass
      AND d.deptype = 'e')
SELECT 'function ' || p.oid::regprocedure::text,
       CASE WHEN p.prokind = 'a' THEN 'aggregate' ELSE pg_get_functiondef(p.oid) END
       || ' acl=' || coalesce(p.proacl::text, '')
FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
UNION ALL
SELECT 'relation ' || c.oid::regclass::text,
       c.relkind::text || ' acl=' || coalesce(c.relacl::text, '')
       || ' rls=' || c.relrowsecurity::text || '/' || c.relforcerowsecurity::text
       || ' options=' || coalesce(c.reloptions::text, '')
       || ' columns=' || coalesce((
            SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                              || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                              || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
                              || coalesce(' acl=' || a.attacl::text, ''),
                              ', ' ORDER BY a.attnum)
            FROM pg_attribute a
            LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
       || ' constraints=' || coalesce((
            SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), ', ' ORDER BY conname)
            FROM pg_constraint WHERE conrelid = c.oid), '')
       || ' indexes=' || coalesce((
            SELECT string_agg(pg_get_indexdef(indexrelid), ', ' ORDER BY 1)
            FROM pg_index WHERE indrelid = c.oid), '')
       || ' policies=' || coalesce((
            SELECT string_agg(polname || ' ' || polcmd::text || ' ' || polpermissive::text
                              || ' ' || polroles::regrole[]::text
                              || ' ' || coalesce(pg_get_expr(polqual, polrelid), '')
                              || ' ' || coalesce(pg_get_expr(polwithcheck, polrelid), ''),
                              ', ' ORDER BY polname)
            FROM pg_policy WHERE polrelid = c.oid), '')
       || ' triggers=' || coalesce((
            SELECT string_agg(pg_get_triggerdef(oid), ', ' ORDER BY tgname)
            FROM pg_trigger WHERE tgrelid = c.oid AND NOT tgisinternal), '')
       || CASE WHEN c.relkind IN ('v', 'm') THEN ' view=' || pg_get_viewdef(c.oid) ELSE '' END
FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
UNION ALL
SELECT 'type ' || t.oid::regtype::text, t.typtype::text
FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
UNION ALL
SELECT 'other ' || pg_describe_object(m.classid, m.objid, 0), ''
FROM members m
WHERE m.classid NOT IN ('pg_proc'::regclass, 'pg_class'::regclass, 'pg_type'::regclass)
UNION ALL
SELECT 'dumped tables', coalesce(extconfig::regclass[]::text, '') || ' '
                        || coalesce(extcondition::text, '')
FROM pg_extension WHERE extname = 'pg_steadytext'
$$;
CREATE TABLE upgraded_extension AS SELECT * FROM extension_objects();
SELECT split_part(object, ' ', 1) AS kind, count(*) FROM upgraded_extension
GROUP BY 1 ORDER BY 1;
SELECT definition AS dumped_tables FROM upgraded_extension WHERE object = 'dumped tables';
-- results are compressed with lz4 where this PostgreSQL was built with it (the default otherwise)
SELECT a.attrelid::regclass AS "table", a.attname,
       a.attcompression = CASE WHEN 'lz4' = ANY (s.enumvals) THEN 'l' ELSE '' END AS as_built
FROM pg_attribute a, pg_settings s
WHERE a.attrelid IN ('steadytext_queue'::regclass, 'steadytext_result_cache'::regclass)
  AND a.attname = 'result' AND s.name = 'default_toast_compression'
ORDER BY 1;
