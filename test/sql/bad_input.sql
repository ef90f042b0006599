-- Bad input to every public function: a specific SQLSTATE each, and nothing
-- half-written.
BEGIN;
\ir ../fixtures.sql
SELECT plan(63);

SELECT toygun.create_resource('dummy') AS r \gset
SELECT toygun.start_task(:'r', 'test') AS t \gset
CREATE TEMP TABLE before_counts AS
    SELECT (SELECT count(*) FROM toygun.resource_type) AS rt, (SELECT count(*) FROM toygun.task_type) AS tt,
           (SELECT count(*) FROM toygun.resource) AS r, (SELECT count(*) FROM toygun.task) AS t,
           (SELECT count(*) FROM toygun.transition) AS h;
CREATE FUNCTION public.wrong_arg(t toygun.resource) RETURNS toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
CREATE FUNCTION public.wrong_ret(t toygun.task) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION public.wrong_set(t toygun.task) RETURNS SETOF toygun.next LANGUAGE sql AS $$ SELECT toygun.stop() $$;
CREATE PROCEDURE public.wrong_kind(t toygun.task) LANGUAGE sql AS $$ SELECT 1 $$;

-- define_resource
SELECT throws_ok($$SELECT toygun.define_resource(NULL)$$, '22004', 'type must not be null', 'define_resource: NULL type');
SELECT throws_ok($$SELECT toygun.define_resource('x', NULL)$$, '22004', 'states must not be null', 'define_resource: NULL states');
SELECT throws_ok($$SELECT toygun.define_resource('')$$, '22023', 'resource type name must not be empty', 'define_resource: empty type');
SELECT throws_ok(format('SELECT toygun.define_resource(%L)', repeat('x', 64)), '42622',
                 'resource type name is too long', 'define_resource: a type name over 63 bytes');
SELECT throws_ok(format('SELECT toygun.define_resource(%L)', repeat('x', 1100000)), '42622',
                 'resource type name is too long', 'define_resource: a type name over 1 MB');
SELECT throws_ok($$SELECT toygun.define_resource(E'a\tb')$$, '22023',
                 'resource type name must not contain control characters', 'define_resource: control characters');
SELECT throws_ok($$SELECT toygun.define_resource('x', '{}')$$, '22023', 'states must not be empty', 'define_resource: no states');
SELECT throws_ok($$SELECT toygun.define_resource('x', '{a,b,a}')$$, '42710', 'state "a" is listed more than once',
                 'define_resource: duplicate states');
SELECT throws_ok($$SELECT toygun.define_resource('x', '{a,__stop__}')$$, '42939', 'state name "__stop__" is reserved',
                 'define_resource: a reserved state');
SELECT throws_ok($$SELECT toygun.define_resource('x', '{a,NULL}')$$, '22004', 'states must not contain nulls',
                 'define_resource: a NULL state');
SELECT throws_ok($$SELECT toygun.define_resource('x', '{{a},{b}}')$$, '2202E', 'states must be a one-dimensional array',
                 'define_resource: a two-dimensional list of states');
SELECT throws_ok($$SELECT toygun.define_resource('x', '{a,""}')$$, '22023', 'state name must not be empty',
                 'define_resource: an empty state name');
SELECT throws_ok($$SELECT toygun.define_resource('x', handler => 'wrong_ret(toygun.task)')$$, '42P13', NULL,
                 'define_resource: a handler of the wrong signature');
SELECT throws_ok($$SELECT toygun.define_resource('x', fields => '{a,a}')$$, '42710',
                 'field "a" is listed more than once in fields', 'define_resource: duplicate fields');
SELECT throws_ok($$SELECT toygun.define_resource('x', handler => 'no_such_function(toygun.resource)')$$, '42883', NULL,
                 'define_resource: a handler that does not exist');

-- define_task
SELECT throws_ok($$SELECT toygun.define_task(NULL, 'x', '{a}', 'dummy_test(toygun.task)')$$, '22004',
                 'resource_type must not be null', 'define_task: NULL resource type');
SELECT throws_ok($$SELECT toygun.define_task('dummy', NULL, '{a}', 'dummy_test(toygun.task)')$$, '22004',
                 'name must not be null', 'define_task: NULL name');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'x', NULL, 'dummy_test(toygun.task)')$$, '22004',
                 'states must not be null', 'define_task: NULL states');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'x', '{a}', NULL)$$, '22004',
                 'handler must not be null', 'define_task: NULL handler');
SELECT throws_ok($$SELECT toygun.define_task('nope', 'x', '{a}', 'dummy_test(toygun.task)')$$, '42704',
                 'resource type "nope" does not exist', 'define_task: an unknown resource type');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'x', '{}', 'dummy_test(toygun.task)')$$, '22023',
                 'states must not be empty', 'define_task: no states');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'x', '{a,a}', 'dummy_test(toygun.task)')$$, '42710',
                 'state "a" is listed more than once', 'define_task: duplicate states');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'x', '{a,__new__}', 'dummy_test(toygun.task)')$$, '42939',
                 'state "__new__" may only be declared first, and before another state', 'define_task: __new__ not first');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'x', '{a}', 'wrong_arg(toygun.resource)')$$, '42P13',
                 'handler public.wrong_arg(toygun.resource) must be a function taking toygun.task and returning toygun.next',
                 'define_task: a handler taking the wrong type');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'x', '{a}', 'wrong_ret(toygun.task)')$$, '42P13', NULL,
                 'define_task: a handler returning the wrong type');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'x', '{a}', 'wrong_set(toygun.task)')$$, '42P13', NULL,
                 'define_task: a set-returning handler');
SELECT throws_ok($$SELECT toygun.define_task('dummy', 'x', '{a}', 'wrong_kind(toygun.task)')$$, '42P13', NULL,
                 'define_task: a procedure as handler');
SELECT throws_ok($$SELECT toygun.define_task('dummy', E'x\n', '{a}', 'dummy_test(toygun.task)')$$, '22023',
                 'task name must not contain control characters', 'define_task: control characters in a name');

-- create_resource
SELECT throws_ok($$SELECT toygun.create_resource(NULL)$$, '22004', 'type must not be null', 'create_resource: NULL type');
SELECT throws_ok($$SELECT toygun.create_resource('nope')$$, '42704', 'resource type "nope" does not exist',
                 'create_resource: an unknown type');
SELECT throws_ok($$SELECT toygun.create_resource('dummy', NULL)$$, '22004', 'attrs must not be null',
                 'create_resource: NULL attrs');
SELECT throws_ok($$SELECT toygun.create_resource('dummy', '[1, 2]')$$, '22023', 'attrs must be a JSON object',
                 'create_resource: attrs that are an array');
SELECT throws_ok($$SELECT toygun.create_resource('dummy', '"text"')$$, '22023', 'attrs must be a JSON object',
                 'create_resource: attrs that are a scalar');
SELECT throws_ok($$SELECT toygun.create_resource($x$'; DROP TABLE toygun.task; --$x$)$$, '42704', NULL,
                 'create_resource: SQL-looking text is just a name');

-- start_task
SELECT throws_ok($$SELECT toygun.start_task(NULL, 'test')$$, '22004', 'resource must not be null', 'start_task: NULL resource');
SELECT throws_ok(format($$SELECT toygun.start_task(%L, NULL)$$, :'r'), '22004', 'name must not be null', 'start_task: NULL name');
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'test', NULL)$$, :'r'), '22004', 'args must not be null',
                 'start_task: NULL args');
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'nope')$$, :'r'), '42704',
                 'task "nope" is not defined for resource type "dummy"', 'start_task: an unknown task');
SELECT throws_ok($$SELECT toygun.start_task('00000000-0000-0000-0000-000000000001', 'test')$$, 'P0002',
                 'resource 00000000-0000-0000-0000-000000000001 does not exist', 'start_task: an unknown resource');
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'another', '[]')$$, :'r'), '22023', 'args must be a JSON object',
                 'start_task: args that are not an object');

-- operations on runs
SELECT throws_ok($$SELECT toygun.tick_task(NULL)$$, '22004', 'id must not be null', 'tick_task: NULL id');
SELECT throws_ok($$SELECT toygun.tick_task('00000000-0000-0000-0000-000000000002')$$, 'P0002',
                 'task 00000000-0000-0000-0000-000000000002 does not exist', 'tick_task: an unknown run');
SELECT throws_ok(format($$SELECT toygun.transition_task(%L, NULL)$$, :'t'), '22004', 'state must not be null',
                 'transition_task: NULL state');
SELECT throws_ok(format($$SELECT toygun.transition_task(%L, 'middle', '1')$$, :'t'), '22023', 'attrs must be a JSON object',
                 'transition_task: attrs that are not an object');
SELECT throws_ok($$SELECT toygun.stop_task(NULL)$$, '22004', 'id must not be null', 'stop_task: NULL id');
SELECT throws_ok(format($$SELECT toygun.panic_task(%L, NULL)$$, :'t'), '22004', 'message must not be null',
                 'panic_task: NULL message');
SELECT throws_ok(format($$SELECT toygun.rewind_task(%L, NULL)$$, :'t'), '22004', 'n must not be null', 'rewind_task: NULL n');
SELECT throws_ok(format($$SELECT toygun.rewind_task(%L, -5)$$, :'t'), '22023', 'n must be at least 1', 'rewind_task: negative n');
SELECT throws_ok($$SELECT toygun.tick_resource(NULL)$$, '22004', 'id must not be null', 'tick_resource: NULL id');
SELECT throws_ok($$SELECT toygun.stop_resource('00000000-0000-0000-0000-000000000003')$$, 'P0002',
                 'resource 00000000-0000-0000-0000-000000000003 does not exist', 'stop_resource: an unknown resource');
SELECT throws_ok(format($$SELECT toygun.transition_resource(%L, NULL)$$, :'r'), '22004', 'state must not be null',
                 'transition_resource: NULL state');
SELECT is(toygun.task_for(NULL, NULL), NULL::toygun.task, 'task_for of nothing is NULL');
SELECT is(toygun.is_running(NULL, 'test'), false, 'is_running of nothing is false');
SELECT is((SELECT count(*) FROM toygun.history(NULL)), 0::bigint, 'history of nothing is empty');

-- outcome constructors
SELECT throws_ok($$SELECT toygun.go(NULL)$$, '22004', 'state must not be null', 'go: NULL state');
SELECT throws_ok($$SELECT toygun.go('a', '[1]')$$, '22023', 'attrs must be a JSON object', 'go: attrs that are not an object');
SELECT throws_ok($$SELECT toygun.stay(wait => '-1 second')$$, '22023', 'wait must not be negative', 'stay: a negative wait');
SELECT throws_ok($$SELECT toygun.stop('true')$$, '22023', 'attrs must be a JSON object', 'stop: attrs that are not an object');
SELECT throws_ok($$SELECT toygun.panic(NULL)$$, '22004', 'message must not be null', 'panic: NULL message');

-- declared fields
SELECT toygun.define_resource('strict', fields => '{size}');
SELECT throws_ok($$SELECT toygun.create_resource('strict', '{"colour": "red"}')$$, '42703',
                 'field "colour" is not declared by resource type "strict"', 'an undeclared resource field is refused');
SELECT toygun.define_task('dummy', 'strict', '{one}', 'dummy_test(toygun.task)', fields => '{a}');
SELECT throws_ok(format($$SELECT toygun.start_task(%L, 'strict', '{"b": 1}')$$, :'r'), '42703',
                 'field "b" is not declared by task type "dummy.strict"', 'an undeclared task field is refused at start');
SELECT toygun.start_task(:'r', 'strict', '{"a": 1}') AS s \gset
SELECT throws_ok(format($$SELECT toygun.transition_task(%L, 'one', '{"c": 1}')$$, :'s'), '42703',
                 'field "c" is not declared by task type "dummy.strict"', 'an undeclared field is refused in a transition');
SELECT toygun.stop_task(:'s');

-- nothing half-written
SELECT results_eq($$ SELECT (SELECT count(*) FROM toygun.resource_type) - 1, (SELECT count(*) FROM toygun.task_type) - 1,
                            (SELECT count(*) FROM toygun.resource), (SELECT count(*) FROM toygun.task) - 1,
                            (SELECT count(*) FROM toygun.transition) - 1 $$,
                  $$ SELECT rt, tt, r, t, h FROM before_counts $$,
                  'failed calls wrote nothing (beyond the strict type, its run, and its stop)');

SELECT * FROM finish();
ROLLBACK;
