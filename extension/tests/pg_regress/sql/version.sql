-- steadytext_version(): the library version, equal to the installed extension version
SELECT steadytext_version() ~ '^[0-9]+\.[0-9]+\.[0-9]+$' AS is_semver;
SELECT steadytext_version() = extversion AS matches_extversion
  FROM pg_extension WHERE extname = 'pg_steadytext';
SELECT provolatile, proparallel FROM pg_proc WHERE proname = 'steadytext_version';
-- takes no arguments
SELECT steadytext_version('x');
