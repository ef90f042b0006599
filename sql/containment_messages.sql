-- Containment (0.3): the exact texts of a changed search_path, of a task
-- type whose owner lost the resource type's owner, and of keyring errors,
-- which show the file's path only to superusers.
SET client_min_messages = notice;
CREATE EXTENSION toygun;
CREATE ROLE tg_m_owner;
CREATE ROLE tg_m_tasker IN ROLE tg_m_owner;
CREATE ROLE tg_m_other;
CREATE FUNCTION public.tg_m_h(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;

SET ROLE tg_m_owner;
SET search_path = tg_m_a, public;
SELECT toygun.define_resource('m_res');
-- a member's redefinition keeps the owner's search_path, without a word
SET ROLE tg_m_tasker;
SET search_path = tg_m_b, public;
SELECT toygun.define_resource('m_res');
-- the owner's own redefinition takes its search_path, and says so
SET ROLE tg_m_owner;
SELECT toygun.define_resource('m_res');
SELECT toygun.define_resource('m_res', owner => 'tg_m_other');

-- a task type whose owner lost the membership it was defined with
SET ROLE tg_m_tasker;
SELECT toygun.define_task('m_res', 'job', '{one}', 'public.tg_m_h(toygun.task)');
SELECT toygun.create_resource('m_res') AS r \gset
RESET ROLE;
REVOKE tg_m_owner FROM tg_m_tasker;
SELECT toygun.start_task(:'r', 'job');
\echo :LAST_ERROR_SQLSTATE

-- keyring errors: the path for superusers, a hint to ask one for others.
-- A reload reaches this session between statements: wait for it, bounded.
ALTER SYSTEM SET toygun.keyring_file = '/nonexistent/toygun.keys';
SELECT pg_reload_conf();
\set ECHO none
\o /dev/null
SELECT format('SELECT pg_sleep(0.1) WHERE current_setting(%L) <> %L', 'toygun.keyring_file', '/nonexistent/toygun.keys')
  FROM generate_series(1, 600) \gexec
\o
\set ECHO all
SELECT current_setting('toygun.keyring_file');
SELECT toygun.encrypt('1');
SET ROLE tg_m_other;
SELECT toygun.encrypt('1');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
ALTER SYSTEM RESET toygun.keyring_file;
SELECT pg_reload_conf();
\set ECHO none
\o /dev/null
SELECT format('SELECT pg_sleep(0.1) WHERE current_setting(%L) = %L', 'toygun.keyring_file', '/nonexistent/toygun.keys')
  FROM generate_series(1, 600) \gexec
\o
\set ECHO all
SELECT toygun.decrypt(toygun.encrypt('"ok"'));

-- toygun_guard_drop refuses dropping a handler: a superuser's replica session skips it
SET session_replication_role = replica;
DROP FUNCTION public.tg_m_h(toygun.task);
DROP EXTENSION toygun;
RESET session_replication_role;
DROP ROLE tg_m_owner, tg_m_tasker, tg_m_other;
