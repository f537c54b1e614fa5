-- steadytext.daemon_token: hidden from other roles, and refused where other roles could read it
-- (pg_db_role_setting and pg_proc are readable by every role). The refusal needs the library
-- loaded in the session that stores the setting (shared_preload_libraries loads it everywhere);
-- a value stored while it was not is ignored, with a warning, when the library loads.
SELECT steadytext_version() IS NOT NULL AS loaded;
SELECT stmt, sqlstate_of(stmt) AS outcome FROM (VALUES
    (format('ALTER DATABASE %I SET steadytext.daemon_token = %L', current_database(), 's3cret')),
    ($$ALTER ROLE regress_alice SET steadytext.daemon_token = 's3cret'$$),
    (format('ALTER ROLE regress_alice IN DATABASE %I SET steadytext.daemon_token = %L',
            current_database(), 's3cret')),
    ($$CREATE FUNCTION leak() RETURNS int LANGUAGE sql SET steadytext.daemon_token = 's3cret' AS 'SELECT 1'$$),
    ($$ALTER ROLE regress_alice SET steadytext.daemon_token = ''$$),
    ($$ALTER ROLE regress_alice RESET steadytext.daemon_token$$),
    ($$SET steadytext.daemon_token = 's3cret'$$),
    ($$RESET steadytext.daemon_token$$)
) AS t(stmt);
ALTER ROLE regress_alice SET steadytext.daemon_token = 's3cret';
SELECT count(*) AS leaks FROM pg_proc WHERE proname = 'leak';
SELECT count(*) AS stored_anywhere FROM pg_db_role_setting
WHERE array_to_string(setconfig, ',') LIKE '%s3cret%';
-- postgresql.conf and ALTER SYSTEM are where it belongs
ALTER SYSTEM SET steadytext.daemon_token = 's3cret';
ALTER SYSTEM RESET steadytext.daemon_token;
-- other roles cannot read it
SET steadytext.daemon_token = 's3cret';
SET ROLE regress_alice;
SELECT stmt, sqlstate_of(stmt) AS outcome FROM (VALUES
    ($$SHOW steadytext.daemon_token$$),
    ($$SELECT current_setting('steadytext.daemon_token')$$)
) AS t(stmt);
SELECT count(*) AS in_pg_settings FROM pg_settings WHERE name = 'steadytext.daemon_token';
RESET ROLE;
RESET steadytext.daemon_token;
