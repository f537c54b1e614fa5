-- run once after the regression database is (re)created
CREATE EXTENSION pg_steadytext;
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
