-- toygun 0.1 to 0.2. Frozen once released, like every upgrade script.
\echo Use "ALTER EXTENSION toygun UPDATE TO '0.2'" to load this file. \quit

-- 0.2 changes no SQL object of 0.1: its fixes live in the shared library,
-- which both versions load (stricter checks of names, handlers, waits and
-- secrets; see CHANGELOG.md). The one change to the install script, a check
-- that schema toygun is the installing role's own and empty, runs only at
-- CREATE EXTENSION: a database on 0.1 already has toygun's schema.
--
-- sql/upgrade.sql proves that a database updated from 0.1 has exactly the
-- objects of a fresh 0.2 install; a change to src/sql/ without its upgrade
-- step here fails that test.
