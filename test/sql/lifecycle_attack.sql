-- Hostile review of issue 16 (field types, renames, safe redefinition), as a
-- hostile tenant and an unlucky operator. Each check is an attack that must
-- fail, or a finding that failed before it was fixed. Findings judged
-- acceptable are in notes/lifecycle-design.md, "Hostile review".
BEGIN;
\ir ../fixtures.sql
SELECT plan(6);

CREATE ROLE tg_lc_victim;
CREATE ROLE tg_lc_atk;
CREATE SCHEMA lc_victim AUTHORIZATION tg_lc_victim;
CREATE SCHEMA lc_atk AUTHORIZATION tg_lc_atk;
GRANT USAGE ON SCHEMA lc_victim TO PUBLIC;

-- The victim's function (EXECUTE is PUBLIC's by default), used by its own type.
SET ROLE tg_lc_victim;
CREATE FUNCTION lc_victim.h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stay() $$;
CREATE FUNCTION lc_victim.h2(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stay() $$;
SELECT toygun.define_resource('lc_vbox', '{up}');
SELECT toygun.define_task('lc_vbox', 'job', '{one}', 'lc_victim.h(toygun.task)');
RESET ROLE;

-- Finding: the attacker makes the victim's function its handler and so held
-- up the victim's DROP FUNCTION (2BP01 naming the attacker's type): only
-- uses by types the dropping role may act for count.
SET ROLE tg_lc_atk;
SELECT toygun.define_resource('lc_abox', '{up}');
SELECT toygun.define_task('lc_abox', 'job', '{one}', 'lc_victim.h2(toygun.task)');
RESET ROLE;
SELECT is(pg_temp.as_role('tg_lc_victim', 'DROP FUNCTION lc_victim.h2(toygun.task)'), 'ok',
    'a type of another owner does not hold up the drop of the function it borrowed');
SELECT is(pg_temp.as_role('tg_lc_victim', 'DROP FUNCTION lc_victim.h(toygun.task)'),
    '2BP01 cannot drop function lc_victim.h(toygun.task) because a toygun type uses it',
    'the function of one''s own type is still guarded');
SELECT is(pg_temp.sqlstate_of('DROP FUNCTION lc_victim.h(toygun.task)'), '2BP01',
    'and a superuser (who may act for every owner) is refused too');
SELECT is(pg_temp.as_role('tg_lc_atk', 'DROP OWNED BY tg_lc_atk'), 'ok',
    'DROP OWNED BY of a tenant whose objects no type uses passes');

-- A rename cannot take another owner's name, or touch its type.
SELECT is(pg_temp.as_role('tg_lc_atk', $$SELECT toygun.rename_resource_type('lc_abox', 'lc_vbox')$$),
    '42710 resource type "lc_vbox" already exists', 'a rename does not take a name that is taken');
SELECT is(pg_temp.as_role('tg_lc_atk', $$SELECT toygun.rename_task('lc_vbox', 'job', 'job2')$$),
    '42501 permission denied for resource type "lc_vbox"', 'nor renames another owner''s task');

SELECT * FROM finish();
ROLLBACK;
