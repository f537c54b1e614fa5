-- Requests belong to a role's oid, not its name: a role dropped and created again under the same
-- name is a new role and does not inherit the old one's prompts and results.
TRUNCATE steadytext_queue;
CREATE ROLE regress_carol LOGIN;
SET ROLE regress_carol;
SELECT steadytext_generate_async('carol''s private prompt', 8) AS old \gset
SELECT count(*) AS visible FROM steadytext_queue;
RESET ROLE;
SELECT owner::oid AS carol_oid FROM steadytext_queue WHERE request_id = :'old' \gset
SELECT pg_typeof(owner) AS owner_type, owner FROM steadytext_queue WHERE request_id = :'old';
DROP ROLE regress_carol;
CREATE ROLE regress_carol LOGIN;
SET ROLE regress_carol;
SELECT count(*) AS visible FROM steadytext_queue;
SELECT stmt, sqlstate_of(format(stmt, :'old')) AS outcome FROM (VALUES
    ($$SELECT steadytext_check_async(%L)$$),
    ($$SELECT steadytext_get_async_result(%L, 0)$$),
    ($$SELECT steadytext_cancel_async(%L)$$)
) AS t(stmt);
SELECT status FROM steadytext_check_async_batch(ARRAY[:'old']::uuid[]);
RESET ROLE;
-- the old request keeps the dropped role's oid (shown as a number), never the new role's
SELECT owner::oid = :carol_oid AS dropped_roles_oid, owner::text ~ '^[0-9]+$' AS shown_as_oid,
       owner::oid <> 'regress_carol'::regrole::oid AS not_the_new_role
FROM steadytext_queue WHERE request_id = :'old';
DROP ROLE regress_carol;
