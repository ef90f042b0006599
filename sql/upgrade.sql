-- The upgrade path: a database on toygun 0.1 follows to 0.2, 0.3 and on to
-- the current version with ALTER EXTENSION toygun UPDATE, keeping its data, and
-- ends each step with exactly the objects of a fresh install of that version.

-- Every object of the extension, described without OIDs: members, function
-- definitions, columns, storage options, indexes, constraints, triggers,
-- views, types, sequences, grants, comments and the tables pg_dump dumps.
CREATE FUNCTION toygun_fingerprint() RETURNS SETOF text LANGUAGE sql AS $$
WITH m AS (
    SELECT d.classid, d.objid, d.objsubid
      FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
     WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'toygun' AND d.deptype = 'e'
), rel AS (
    SELECT c.oid FROM m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
    UNION
    SELECT t.typrelid FROM m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
     WHERE t.typrelid <> 0
)
SELECT 'member ' || pg_describe_object(classid, objid, objsubid) FROM m
UNION ALL
SELECT 'function ' || pg_get_functiondef(p.oid) || ' acl ' || coalesce(p.proacl::text, '-')
  FROM m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
UNION ALL
SELECT format('relation %s kind %s persistence %s options %s acl %s rls %s',
              c.oid::regclass, c.relkind, c.relpersistence, c.reloptions, c.relacl, c.relrowsecurity)
  FROM rel JOIN pg_class c USING (oid)
UNION ALL
SELECT format('column %s %s %s %s not null %s default %s acl %s', a.attrelid::regclass, a.attnum, a.attname,
              format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid),
              coalesce(a.attacl::text, '-'))
  FROM rel JOIN pg_attribute a ON a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid) || coalesce(' options ' || c.reloptions::text, '')
  FROM rel JOIN pg_index i ON i.indrelid = rel.oid JOIN pg_class c ON c.oid = i.indexrelid
UNION ALL
SELECT format('constraint %s %s %s', co.conrelid::regclass, co.conname, pg_get_constraintdef(co.oid))
  FROM rel JOIN pg_constraint co ON co.conrelid = rel.oid
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(tg.oid)
  FROM rel JOIN pg_trigger tg ON tg.tgrelid = rel.oid AND NOT tg.tgisinternal
UNION ALL
SELECT format('policy %s %s %s %s', po.polrelid::regclass, po.polname, pg_get_expr(po.polqual, po.polrelid),
              pg_get_expr(po.polwithcheck, po.polrelid))
  FROM rel JOIN pg_policy po ON po.polrelid = rel.oid
UNION ALL
SELECT format('view %s %s', rel.oid::regclass, pg_get_viewdef(rel.oid))
  FROM rel JOIN pg_class c USING (oid) WHERE c.relkind IN ('v', 'm')
UNION ALL
SELECT format('sequence %s %s %s %s %s %s %s', s.seqrelid::regclass, format_type(s.seqtypid, NULL),
              s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcycle)
  FROM rel JOIN pg_sequence s ON s.seqrelid = rel.oid
UNION ALL
SELECT format('type %s %s %s %s %s %s %s %s %s %s', t.oid::regtype, t.typtype, t.typlen, t.typalign,
              t.typstorage, t.typinput, t.typoutput, t.typreceive, t.typsend, t.typacl)
  FROM m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
UNION ALL
SELECT format('comment %s %s', pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description)
  FROM m JOIN pg_description d ON d.classoid = m.classid AND d.objoid = m.objid
UNION ALL
SELECT format('dumped %s %s', c::regclass, f)
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x(c, f) WHERE e.extname = 'toygun'
$$;

-- The lines only one of two fingerprints has, and which one.
CREATE FUNCTION fp_diff(updated regclass, fresh regclass) RETURNS TABLE ("where" text, line text)
    LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        '(SELECT %1$L, line FROM %2$s EXCEPT ALL SELECT %1$L, line FROM %3$s)'
        ' UNION ALL (SELECT %4$L, line FROM %3$s EXCEPT ALL SELECT %4$L, line FROM %2$s) ORDER BY 1, 2',
        'only updated', updated, fresh, 'only fresh');
END $$;

CREATE EXTENSION toygun VERSION '0.1';
SELECT extversion FROM pg_extension WHERE extname = 'toygun';
SELECT source, target, path FROM pg_extension_update_paths('toygun') ORDER BY 1, 2;

-- runs made on 0.1, one finished and one halfway
SELECT toygun.define_resource('site');
CREATE FUNCTION site_deploy(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
  SELECT CASE t.state WHEN 'build' THEN toygun.go('ship', '{"built": true}')
                      ELSE toygun.stop() END
$$;
SELECT toygun.define_task('site', 'deploy', '{build,ship}', 'site_deploy(toygun.task)');
SELECT toygun.create_resource('site', '{"host": "a.example"}') AS r \gset
SELECT toygun.start_task(:'r', 'deploy') AS done \gset
SELECT state FROM toygun.tick_task(:'done');
SELECT state FROM toygun.tick_task(:'done');
SELECT toygun.start_task(:'r', 'deploy') AS halfway \gset
SELECT state FROM toygun.tick_task(:'halfway');
CREATE TABLE fp_before AS SELECT toygun_fingerprint() AS line;

ALTER EXTENSION toygun UPDATE TO '0.2';
CREATE TABLE fp_02_updated AS SELECT toygun_fingerprint() AS line;
ALTER EXTENSION toygun UPDATE TO '0.3';
CREATE TABLE fp_03_updated AS SELECT toygun_fingerprint() AS line;
-- the history's checksum on 0.3: 0.4 moves it into the partitioned layout
CREATE TABLE history_03 AS
    SELECT count(*) AS n, md5(string_agg(concat_ws('/', object_id, step, from_state, to_state, at, note),
                                         ',' ORDER BY object_id, step)) AS sum
      FROM toygun.transition;
SELECT n FROM history_03;
ALTER EXTENSION toygun UPDATE;
-- retention: every row came along, equal, into transition_forever, to be kept forever
SELECT h.n = o.n AS same_count, h.sum = o.sum AS same_history
  FROM history_03 o,
       (SELECT count(*) AS n, md5(string_agg(concat_ws('/', object_id, step, from_state, to_state, at, note),
                                             ',' ORDER BY object_id, step)) AS sum
          FROM toygun.transition) h;
SELECT tableoid::regclass AS partition, count(*), bool_and(expires_at = 'infinity') AS forever
  FROM toygun.transition GROUP BY 1;
SELECT count(*) AS kept_forever FROM toygun.task_type WHERE keep IS NULL;
DROP TABLE history_03;
SELECT extversion = (SELECT default_version FROM pg_available_extensions WHERE name = 'toygun') AS current
  FROM pg_extension WHERE extname = 'toygun';

-- the data came along, and the halfway run goes on
SELECT state, step FROM toygun.task WHERE id = :'done';
SELECT state, step, attrs FROM toygun.tick_task(:'halfway');
SELECT step, from_state, to_state FROM toygun.history(:'halfway');
-- histories made before 0.4 have their type and no maker; the tick since has its maker
SELECT step, resource_type, made_by IS NOT NULL AS has_maker, worker_pid, reason
  FROM toygun.transition WHERE object_id = :'halfway' ORDER BY step;
-- a role that read the runs on 0.3 reads them still: the update granted read to PUBLIC
CREATE ROLE upgrade_reader;
SET ROLE upgrade_reader;
SELECT (SELECT count(*) FROM toygun.task) AS runs, (SELECT count(*) FROM toygun.transition) AS history_rows;
RESET ROLE;
DROP ROLE upgrade_reader;
SELECT attrs FROM toygun.resource WHERE id = :'r';
-- the task type keeps the settings' retry policy, and takes its own
SELECT max_attempts, retry_backoff, tick_timeout FROM toygun.task_type;
SELECT toygun.define_task('site', 'deploy', '{build,ship}', 'site_deploy(toygun.task)',
                          max_attempts => 3, tick_timeout => '5 s');
SELECT max_attempts, retry_backoff, tick_timeout FROM toygun.task_type;

-- an updated database has what a fresh install has, object for object
CREATE TABLE fp_updated AS SELECT toygun_fingerprint() AS line;
DROP EXTENSION toygun CASCADE;
-- the frozen 0.2 script installs what 0.1 updated to 0.2 had
CREATE EXTENSION toygun VERSION '0.2';
CREATE TABLE fp_02_fresh AS SELECT toygun_fingerprint() AS line;
SELECT * FROM fp_diff('fp_02_updated', 'fp_02_fresh');
DROP EXTENSION toygun;
-- the frozen 0.3 script installs what 0.2 updated to 0.3 had
CREATE EXTENSION toygun VERSION '0.3';
CREATE TABLE fp_03_fresh AS SELECT toygun_fingerprint() AS line;
SELECT * FROM fp_diff('fp_03_updated', 'fp_03_fresh');
DROP EXTENSION toygun;
CREATE EXTENSION toygun;
CREATE TABLE fp_fresh AS SELECT toygun_fingerprint() AS line;
SELECT count(*) > 200 AS described FROM fp_fresh;
SELECT * FROM fp_diff('fp_updated', 'fp_fresh');
-- the comparison sees a change: one storage option differs
ALTER TABLE toygun.task SET (fillfactor = 80);
SELECT line FROM (SELECT toygun_fingerprint() AS line EXCEPT SELECT line FROM fp_fresh) d;
SELECT count(*) AS changed_in_0_2 FROM fp_diff('fp_before', 'fp_02_updated');
SELECT count(*) > 0 AS changed_in_0_3 FROM fp_diff('fp_02_updated', 'fp_03_updated');
-- 0.4: three functions and the view, old and new, and the new read ONLY toygun's tables;
-- issue 13's rights: the type_grant table (with its columns and constraints), type_grants
-- (which reads ONLY type_grant), grant_type, revoke_type and readable_types; row-level
-- security and a policy on resource and task, and toygun.stats as security_invoker;
-- row-level security and a policy on schedule and schedule_start (which reads ONLY schedule)
-- failures kept: the failure table (columns, key, policy, dumped); the retry policy
-- per task type: three columns of task_type, define_task old and new
-- issue 14: update_task and update_resource; start_task old and new (if_live); retry_task;
-- messages: the message table and its sequence (dumped, policy), send and receive;
-- children: task.parent_run (and its column grant), task_for with it;
-- test helpers: test_tick_until and test_advance;
-- parents: resource_type.parent_type, define_resource and stop_resource old and new
-- periodic starts that choose: three columns of schedule, start_every old and new,
-- startable_types, the policies on schedule and schedule_start old and new; wait
-- issue 15: hooks and stop states: resource_type.stop_state, three columns of task_type
-- (should_start, should_stop, stop_state), schedule.last_declined (define_task and
-- define_resource change again, already counted)
-- issue 15: triggers: the trigger table (columns, key, policy, dumped), define_trigger, drop_trigger
-- issue 15's alarms: the alarm table (columns, key, indexes, checks, policy, dumped), the view
-- toygun.alarms (which reads ONLY alarm), raise_alarm, snooze_alarm, close_alarm,
-- resource_type.alarm_handler, define_resource old and new
-- issue 15's notifications: the channel, route and outbox tables (columns, keys, checks, the
-- route's foreign key and index, outbox's index, dumped) and outbox_seq, define_channel,
-- drop_channel, define_route, drop_route
-- issue 15's circuit breakers: the breaker table (columns, key, check, policy), task_type.breaker,
-- define_task old and new again, toygun.stats with its breaker column (already counted)
-- issue 16's field types: resource_type.field_types and task_type.field_types (define_task
-- and define_resource change again, already counted)
-- issue 16's safe redefinition: guard_drop (member and definition) and the event trigger
-- toygun_guard_drop (member); define_task and define_resource gain move_states (already counted).
-- DROP EXTENSION toygun CASCADE below takes site_deploy, a handler: the guard lets it through
-- issue 16's renames: the rename table (columns, key, index, check, policy, dumped) and
-- rename_seq, rename_state, rename_task, rename_resource_type
-- issue 16's schema versions: resource_type.version and .upgrade, task_type.version and
-- .upgrade, resource.version and task.version (and their column grants), task_for with it,
-- backfill (define_task and define_resource change again, already counted)
-- issue 16's retention: task_type.keep and resource_type.keep, the index resource_stopped_idx
-- (stopped runs have none), toygun.transition partitioned (its new column expires_at, no key of its own,
-- its partitions transition_forever and transition_default with their columns, keys (object_id, step) and
-- dump entries, the old table's entry), history() reading toygun.transition without ONLY (so one reading ONLY less),
-- default_keep and maintain (define_task and define_resource change again, already counted);
-- row security on transition_forever and transition_default (their lines, already counted)
-- and the index transition_default_expires_idx
-- issue 17's priorities: task_type.priority and task.priority (with its column grant), the
-- index task_lane_idx, task_due_idx with its new predicate (its line before and after); start_task,
-- define_task and task_for change again, already counted
-- issue 17's queues: table toygun.queue (its columns, constraints, index, row, grant and dump
-- filter), queue_id on resource_type, task_type, resource and task (with the column grants),
-- task_due_idx, task_lane_idx and resource_due_idx with new predicates (before and after),
-- resource_queue_idx, pause_queue, resume_queue, queue_status; define_resource, define_task,
-- task_for and worker_status change again, already counted
-- issue 17's rate limits: the table rate_limit (columns, key, policy, grant, row security, dump
-- entry), task_type.rate_limit, define_rate_limit, drop_rate_limit, take_token and
-- rate_limit_status; define_task changes again, already counted
-- issue 17's toygun.flow: the view (its columns, and its definition, which reads ONLY toygun.task
-- and toygun.resource) and its grant
-- issue 17's concurrency limits: task_type's max_running, concurrency_key, max_per_key and
-- limit_id (with its unique constraint and index), task.flow_key (and its column grant),
-- task_flow_idx, limit_status and _flow_key (and its revoked grant); task_due_idx, task_lane_idx,
-- define_task, task_for and the view toygun.flow change again, already counted
-- issue 18's operator's tools: _new_id, operable_types, secret_readable_types, ops_whoami,
-- ops_status, list_runs and its body _list_runs, run_detail and list_alarms (each a member and
-- a function; _list_runs and run_detail read ONLY toygun.task), task_panic_idx, task_failing_idx
-- issue 18's metrics: _tick_metrics, _prometheus_label, metrics (its body reads ONLY
-- toygun.task_type) and its grant
-- issue 18's chart series: metrics_series (a member, and a function with its grant)
-- issue 18's deliverer: outbox.next_attempt_at and outbox.delivered_by, outbox_alarm_pending_idx
-- issue 18's bounded reads at 1,000,000 runs: _few_runs and ops_gauges (each a member and a
-- function reading ONLY toygun.resource and toygun.task; ops_status now reads ONLY toygun.task
-- too), resource_panic_idx, resource_failing_idx
-- issue 19's definitions_changed, the trigger distribute() puts on the definition tables on
-- Citus (a member and a function)
SELECT count(*) AS changed_in_0_4, count(*) FILTER (WHERE line ~ 'ONLY toygun\.') AS reading_only
  FROM fp_diff('fp_03_updated', 'fp_updated');

DROP TABLE fp_before, fp_02_updated, fp_02_fresh, fp_03_updated, fp_03_fresh, fp_updated, fp_fresh;
DROP FUNCTION fp_diff(regclass, regclass), toygun_fingerprint();
DROP EXTENSION toygun;
