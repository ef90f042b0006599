-- wait(id, timeout, states): its refusals. What it waits for needs commits
-- by other sessions and a worker: test/scenario/wait.sh.
BEGIN;
\ir ../fixtures.sql
SELECT plan(14);

CREATE ROLE tg_w_reader;
CREATE ROLE tg_w_none;
SELECT toygun.grant_type('dummy', 'tg_w_reader', '{read}');

SELECT toygun.create_resource('dummy') AS r \gset
SELECT toygun.start_task(:'r', 'test') AS t \gset

SELECT throws_ok(format($$SELECT toygun.wait(%L)$$, :'t'), '55000',
                 format('run %s was started in this transaction, which has not committed', :'t'),
                 'a run started in the waiting transaction is refused: nobody could move it on');
SELECT is(pg_temp.hint_of(format($$SELECT toygun.wait(%L, '0 s')$$, :'t')),
          'Commit first; wait() sees only committed states.', 'with a hint to commit first');
SELECT count(*) AS ticked FROM toygun.tick_task(:'t') \gset
SELECT throws_ok(format($$SELECT toygun.wait(%L, '0 s', '{middle}')$$, :'t'), '55000',
                 format('run %s was changed in this transaction, which has not committed', :'t'),
                 'so is a run this transaction changed, even in a state waited for');
SELECT is(pg_temp.as_role('tg_w_reader', format($$SELECT toygun.wait(%L, '0 s')$$, :'t')),
          format('55000 run %s was changed in this transaction, which has not committed', :'t'),
          'a role with right read gets as far');

SELECT throws_ok($$SELECT toygun.wait('00000000-0000-0000-0000-000000000001')$$, 'P0002',
                 'task 00000000-0000-0000-0000-000000000001 does not exist', 'an unknown run does not exist');
SELECT is(pg_temp.as_role('tg_w_none', format($$SELECT toygun.wait(%L)$$, :'t')),
          format('P0002 task %s does not exist', :'t'),
          'nor does a run the caller may not read: wait() does not tell whether it exists');

SELECT throws_ok(format($$SELECT toygun.wait(%L, '-1 s')$$, :'t'), '22023', 'timeout must not be negative',
                 'a negative timeout is refused');
SELECT throws_ok(format($$SELECT toygun.wait(%L, '1 s', '{}')$$, :'t'), '22023',
                 'states must name at least one state', 'so is an empty list of states');
SELECT throws_ok(format($$SELECT toygun.wait(%L, '1 s', '{middle,finished}')$$, :'t'), '22023',
                 'state "finished" is not declared by task type "dummy.test"',
                 'and a state the task type does not declare, named');
SELECT is(pg_temp.as_role('tg_w_none', format($$SELECT toygun.wait(%L, '1 s', '{finished}')$$, :'t')),
          format('P0002 task %s does not exist', :'t'),
          'which a role that may not read the run does not learn');
SELECT is(pg_temp.sqlstate_of(format($$SELECT toygun.wait(%L, '0 s', '{__new__,__stop__,__panic__,end}')$$, :'t')),
          '55000', 'toygun''s own states are always allowed');
SELECT is(pg_temp.sqlstate_of(format($$SELECT toygun.wait(%L, NULL)$$, :'t')), '22004', 'timeout must not be NULL');
SELECT is(pg_temp.sqlstate_of(format($$SELECT toygun.wait(%L, '1 s', NULL)$$, :'t')), '22004', 'nor states');
SELECT is(pg_temp.sqlstate_of(format($$SELECT toygun.wait(%L, '1 s', '{middle,NULL}')$$, :'t')), '22004',
          'nor one of them');

SELECT * FROM finish();
ROLLBACK;
