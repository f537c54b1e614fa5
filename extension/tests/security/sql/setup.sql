-- The security tier: each attack of the review, replayed with its expected refusal (see
-- docs/security.md). Run once after the database is (re)created.
CREATE EXTENSION pg_steadytext;
-- sqlstate_of(statement): runs it and shows 'ok' or 'SQLSTATE: message' (uuids masked).
CREATE FUNCTION sqlstate_of(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN regexp_replace(SQLSTATE || ': ' || SQLERRM,
                          '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g');
END
$$;
-- two ordinary login roles (not superusers, not workers), a worker, and a monitoring role
CREATE ROLE regress_alice LOGIN;
CREATE ROLE regress_bob LOGIN;
CREATE ROLE regress_worker LOGIN IN ROLE steadytext_worker;
CREATE ROLE regress_monitor LOGIN IN ROLE pg_monitor;
