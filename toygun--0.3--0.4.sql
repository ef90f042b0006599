-- toygun 0.3 to 0.4. Frozen once released, like every upgrade script.
\echo Use "ALTER EXTENSION toygun UPDATE TO '0.4'" to load this file. \quit

-- sql/upgrade.sql proves that a database updated from 0.1 through 0.3 has
-- exactly the objects of a fresh 0.4 install; a change to src/sql/ without
-- its upgrade step here fails that test.
