-- Retention under attack (lc-attack2): a hostile tenant's keep, an unlucky
-- operator's default ACL, detached or foreign partitions. Each check is an
-- attack that must fail, or a mistake that must not stall maintenance.
BEGIN;
\ir ../fixtures.sql
SELECT plan(9);

CREATE FUNCTION public.ra_job(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT toygun.stop()
$$;
CREATE FUNCTION pg_temp.parts() RETURNS TABLE (oid oid, name text, lo timestamptz) LANGUAGE sql AS $$
    SELECT c.oid, c.oid::regclass::text, (regexp_match(pg_get_expr(c.relpartbound, c.oid), '^FOR VALUES FROM \(''([^'']*)''\)'))[1]::timestamptz
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'toygun.transition'::regclass
$$;
SET TIME ZONE 'UTC';
SET LOCAL toygun.test_now = '2031-03-01 12:00:00+00';

-- ---------------------------------------------------------------------------
-- An operator's default ACL for the extension's owner (a reporting role) must
-- not open the partitions, which the history's row security does not cover
-- when read by name.
CREATE ROLE tg_ra_reader;
SELECT extowner::regrole AS owner FROM pg_extension WHERE extname = 'toygun' \gset
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT ALL ON TABLES TO tg_ra_reader;
SELECT toygun.define_resource('ra', keep => '1 day');
SELECT toygun.maintain();
SELECT is((SELECT count(*) FROM pg_temp.parts() p
            WHERE p.lo = '2031-03-03' AND NOT has_table_privilege('tg_ra_reader', p.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')),
          1::bigint, 'a partition the workers make grants nothing a default ACL asked for');
SELECT is((SELECT array_agg(name ORDER BY name) FROM pg_temp.parts() p JOIN pg_class c USING (oid) WHERE NOT c.relrowsecurity),
          NULL, 'every partition of the history has row security (no policy: the owner''s alone)');
-- a tenant's row in the default partition, read by a role granted it by name
INSERT INTO toygun.transition (object_id, step, from_state, to_state, resource_type, expires_at)
VALUES (gen_random_uuid(), 0, '__new__', 'one', 'ra', '2040-01-01 00:00:00+00');
GRANT SELECT ON toygun.transition_default TO tg_ra_reader;
SET LOCAL ROLE tg_ra_reader;
SELECT is((SELECT count(*) FROM toygun.transition_default), 0::bigint,
          'a grant on a partition by name shows none of its rows');
RESET ROLE;

-- ---------------------------------------------------------------------------
-- A tenant's type kept 1000 years beside one kept a day: partitions around
-- each keep, not one a day for the 1000 years between (365 000, 100 a round,
-- rounds back to back).
SELECT toygun.define_task('ra', 'long', '{one}', 'ra_job(toygun.task)', keep => '1000 years');
SELECT toygun.maintain() AS round \gset
SELECT is((:'round'::jsonb ->> 'partitions_created')::int, 3,
          'a keep of 1000 years beside one of a day makes 3 partitions around it, not the span between');
SELECT is((:'round'::jsonb ->> 'more')::bool, false, 'and the round has nothing more to do');
SELECT is((SELECT array_agg(lo ORDER BY lo) FROM pg_temp.parts() WHERE lo IS NOT NULL AND lo <> 'infinity'),
          ARRAY['2031-03-02 12:01:06', '2031-03-03', '2031-03-04', '3031-03-01 12:01:06', '3031-03-02', '3031-03-03']::timestamptz[],
          'from now + keep (past the range being written) through two widths after it');

-- ---------------------------------------------------------------------------
-- A DBA detaches a partition (to archive it) and keeps the table: the next
-- round makes the range again under another name instead of failing on the
-- name at every round.
ALTER TABLE toygun.transition DETACH PARTITION toygun.transition_20310303_000000;
SELECT lives_ok($$SELECT toygun.maintain()$$, 'a round after a DBA detached a partition and kept its table');
SELECT ok(EXISTS (SELECT FROM pg_temp.parts() WHERE name = 'toygun.transition_20310303_000000_1'
                                                 AND lo = '2031-03-03'),
          'the range comes back under a name of its own');

-- A DBA's partition in another schema, long expired: not ours to drop, and
-- no reason for the round to fail.
CREATE TABLE public.ra_archive (LIKE toygun.transition);
ALTER TABLE toygun.transition ATTACH PARTITION public.ra_archive
    FOR VALUES FROM ('2020-01-01 00:00:00+00') TO ('2020-02-01 00:00:00+00');
SELECT lives_ok($$SELECT toygun.maintain()$$, 'a round with an expired partition in another schema');

SELECT * FROM finish();
ROLLBACK;
