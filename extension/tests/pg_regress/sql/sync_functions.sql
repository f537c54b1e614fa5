-- The synchronous functions call the steadytext daemon that scripts/test starts and points
-- steadytext.daemon_url at. Outputs are deterministic, so they are golden.
SELECT steadytext_generate('The capital of France is', 16);
-- same bytes from the cache, fresh (use_cache := false), and with named arguments
SELECT steadytext_generate(prompt := 'The capital of France is', max_tokens := 16,
                           use_cache := false, seed := 42)
       = steadytext_generate('The capital of France is', 16) AS same_bytes;
SELECT array_length(steadytext_embed('This is an example sentence'), 1) AS dims,
       (steadytext_embed('This is an example sentence'))[1:4] AS first_values;
-- unit length
SELECT round(sqrt(sum(x::float8 * x))::numeric, 4) AS norm
FROM unnest(steadytext_embed('Unit vectors only')) AS x;
-- rerank: best first; without a reranker model a NOTICE says the scores are cosine similarities
SELECT document, round(score::numeric, 4) AS score
FROM steadytext_rerank('What is the capital of France?',
                       ARRAY['Bananas are yellow.', 'Paris is the capital of France.']);
SELECT * FROM steadytext_rerank('capital of France', ARRAY['Paris', 'Bananas'],
                                return_scores := false);
-- constrained generation
SELECT steadytext_generate_json('Is the sky blue? Answer as JSON:',
    '{"type":"object","properties":{"answer":{"type":"boolean"}},"required":["answer"],
      "additionalProperties":false}', 32);
-- the output is valid JSON of the schema's shape
SELECT jsonb_typeof(steadytext_generate_json('Is the sky blue? Answer as JSON:',
    '{"type":"object","properties":{"answer":{"type":"boolean"}},"required":["answer"],
      "additionalProperties":false}', 32)::jsonb -> 'answer') AS answer_type;
SELECT steadytext_generate_regex('The year the war ended was', '[0-9]{4}', 8);
SELECT steadytext_generate_choice('Is Paris in France? Answer:', ARRAY['yes', 'no'], 4);

-- Every bad input, with its SQLSTATE: 22004 NULL, 22023 invalid parameter (also a
-- constrained output that cannot finish within max_tokens), 2201B invalid regex, 54000 over
-- the context window. Arguments are checked before the daemon is called where possible.
SELECT stmt, sqlstate_of(stmt) AS outcome FROM (VALUES
    ($$SELECT steadytext_generate(NULL)$$),
    ($$SELECT steadytext_generate('')$$),
    ($$SELECT steadytext_generate('x', 0)$$),
    ($$SELECT steadytext_generate('x', 4097)$$),
    ($$SELECT steadytext_generate('x', NULL)$$),
    ($$SELECT steadytext_generate('x', use_cache => NULL)$$),
    ($$SELECT steadytext_generate('x', seed => NULL)$$),
    ($$SELECT steadytext_generate(repeat('word ', 5000), 16)$$),
    ($$SELECT steadytext_embed(NULL)$$),
    ($$SELECT steadytext_embed('')$$),
    ($$SELECT steadytext_embed('x', NULL)$$),
    ($$SELECT steadytext_embed('x', seed => NULL)$$),
    ($$SELECT steadytext_generate_json('x', NULL)$$),
    ($$SELECT steadytext_generate_json('x', '[]')$$),
    -- a malformed JSON Schema is refused before the daemon is asked, with the value's path
    ($$SELECT steadytext_generate_json('x', '{"type": 12}')$$),
    ($$SELECT steadytext_generate_json('x', '{"type": "strin"}')$$),
    ($$SELECT steadytext_generate_json('x', '{"properties": {"age": {"type": "integer", "minimum": "0"}}}')$$),
    ($$SELECT steadytext_generate_json('x', '{"required": "name"}')$$),
    ($$SELECT steadytext_generate_json('x', '{"type": "string", "pattern": "(ab"}')$$),
    ($$SELECT steadytext_generate_json('x', '{"anyOf": []}')$$),
    ($$SELECT steadytext_generate_json('x', '{"type": "array", "items": {"maxItems": -1}}')$$),
    ($$SELECT steadytext_generate_json('x', '{}', 0)$$),
    ($$SELECT steadytext_generate_regex('x', NULL)$$),
    ($$SELECT steadytext_generate_regex('x', '')$$),
    ($$SELECT steadytext_generate_regex('x', '([a-z]')$$),
    ($$SELECT steadytext_generate_regex('x', '[a-z]{40}', 2)$$),
    ($$SELECT steadytext_generate_choice('x', NULL)$$),
    ($$SELECT steadytext_generate_choice('x', ARRAY[]::text[])$$),
    ($$SELECT steadytext_generate_choice('x', ARRAY['a', NULL])$$),
    ($$SELECT steadytext_generate_choice('x', ARRAY['a', ''])$$),
    ($$SELECT steadytext_generate_choice('x', ARRAY['a', 'a'])$$),
    ($$SELECT * FROM steadytext_rerank(NULL, ARRAY['d'])$$),
    ($$SELECT * FROM steadytext_rerank('', ARRAY['d'])$$),
    ($$SELECT * FROM steadytext_rerank('q', NULL)$$),
    ($$SELECT * FROM steadytext_rerank('q', ARRAY[]::text[])$$),
    ($$SELECT * FROM steadytext_rerank('q', ARRAY['d', NULL])$$),
    ($$SELECT * FROM steadytext_rerank('q', ARRAY['d', ''])$$),
    ($$SELECT * FROM steadytext_rerank('q', ARRAY['d'], NULL)$$),
    ($$SELECT * FROM steadytext_rerank('q', ARRAY['d'], return_scores => NULL)$$)
) AS t(stmt);

-- An unreachable daemon is a clear error naming the address and `steadytext serve` (08001),
-- after the connect timeout at most; a malformed URL is 22023.
SET steadytext.daemon_url = 'http://127.0.0.1:9';
SELECT sqlstate_of($$SELECT steadytext_generate('x', 4)$$);
SET steadytext.daemon_url = 'localhost:8765';
SELECT sqlstate_of($$SELECT steadytext_embed('x')$$);
RESET steadytext.daemon_url;
-- statement_timeout interrupts a call that waits on the daemon (57014)
SET statement_timeout = '50ms';
SELECT sqlstate_of($$SELECT steadytext_generate('Write a long story:', 400, use_cache => false)$$);
RESET statement_timeout;
