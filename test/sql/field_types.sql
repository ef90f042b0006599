-- Field types (issue 16): define_resource's and define_task's field_types,
-- checked at definition, and at every attrs write: create_resource,
-- start_task, outcomes, transitions and updates by hand, periodic starts,
-- triggers; encrypted fields before they are sealed; a JSON null removes.
BEGIN;
\ir ../fixtures.sql
SELECT plan(42);

-- the ids of objects made below, by name
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM pg_temp.ids WHERE name = n $$;

CREATE FUNCTION public.ft_job(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    CASE t.state
    WHEN 'one' THEN RETURN toygun.go('two', t.attrs->'out');
    WHEN 'two' THEN RETURN toygun.stay(t.attrs->'out', '1 hour');
    END CASE;
END $$;

SELECT toygun.define_resource('ft_box', '{up,down}',
    field_types => '{"name": "text", "size": "integer", "big": "bigint", "price": "numeric",
                     "ok": "boolean", "at": "timestamptz", "day": "date", "ref": "uuid",
                     "any": "jsonb", "tags": "text[]", "ports": "integer[]", "days": "date[]",
                     "token": "text"}',
    encrypted_fields => '{token}');
SELECT toygun.define_task('ft_box', 'job', '{one,two}', 'ft_job(toygun.task)',
    fields => '{out,note}', field_types => '{"n": "integer", "secret": "integer"}',
    encrypted_fields => '{secret}');
INSERT INTO pg_temp.ids VALUES ('box', toygun.create_resource('ft_box', '{}'));

-- every type: values it takes
SELECT is_empty($q$ SELECT * FROM pg_temp.mismatches(ARRAY[
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"name": "x", "size": 2147483647, "big": -9223372036854775808}')$$, 'ok'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"size": -2147483648, "big": 9223372036854775807, "price": 1.5}')$$, 'ok'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"price": -1e30, "ok": false}')$$, 'ok'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"at": "2024-05-31 10:00:00+02", "day": "2024-05-31"}')$$, 'ok'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), jsonb_build_object('at', now()))$$, 'ok'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"at": "2024-05-31T10:00:00Z"}')$$, 'ok'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"at": "2024-05-31 10:00 Europe/Paris"}')$$, 'ok'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"at": "infinity", "day": "-infinity"}')$$, 'ok'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}')$$, 'ok'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"ref": "{A0EEBC999C0B4EF8BB6D6BB9BD380A11}"}')$$, 'ok'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"any": {"a": [1, null]}}')$$, 'ok'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"any": 3}')$$, 'ok'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"tags": ["a", "b"], "ports": [80, 443], "days": ["2024-01-01"]}')$$, 'ok'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"tags": [], "ports": []}')$$, 'ok'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"undeclared": {"any": "thing"}}')$$, 'ok']
]::text[]) $q$, 'every type takes its values; without fields, an untyped key is still allowed');

-- every type: values it refuses
SELECT is_empty($q$ SELECT * FROM pg_temp.mismatches(ARRAY[
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"name": 1}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"name": ["x"]}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"size": "1"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"size": 1.5}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"size": 1.0}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"size": 2147483648}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"size": true}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"big": 9223372036854775808}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"big": 1e30}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"price": "1.5"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"ok": "true"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"ok": 1}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"at": "2024-05-31 10:00:00"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"at": "now"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"at": "today UTC"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"at": "yesterday"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"at": "soon"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"at": "2024-05-31 25:00+00"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"day": "2024-05-31 Mars/Olympus"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"at": 1717000000}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"at": "294277-01-01 00:00+00"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"day": "2024-02-30"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"day": "tomorrow"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"day": "5874898-01-01"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11x"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"ref": "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"tags": "a"}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"tags": ["a", 1]}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"tags": ["a", null]}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"tags": [["a"]]}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"ports": [80, 1.5]}')$$, '22023'],
    [$$SELECT toygun.update_resource(pg_temp.id('box'), '{"days": ["2024-13-01"]}')$$, '22023']
]::text[]) $q$, 'every type refuses what its SQL type would not read, with 22023');

-- a JSON null removes a typed field, and passes
SELECT toygun.update_resource(pg_temp.id('box'), '{"size": 7}');
SELECT lives_ok($$SELECT toygun.update_resource(pg_temp.id('box'), '{"size": null, "tags": null}')$$,
                'a JSON null passes a typed field');
SELECT ok(NOT ((SELECT attrs FROM toygun.resource WHERE id = pg_temp.id('box')) ?| '{size,tags}'),
          'and removes it');

-- the error names the field, the type label, the type and the JSON type; the value; the hint
SELECT throws_ok($$SELECT toygun.update_resource(pg_temp.id('box'), '{"size": "big"}')$$, '22023',
                 'field "size" of resource type "ft_box" takes integer, not this JSON string',
                 'the message names the field, its type and the value''s JSON type');
SELECT throws_ok($$SELECT toygun.update_resource(pg_temp.id('box'), '{"at": "2024-05-31 10:00"}')$$, '22023',
                 'field "at" of resource type "ft_box" takes timestamptz, not this JSON string: it has no time zone',
                 'a string the type does not read says why');
SELECT throws_ok($$SELECT toygun.update_resource(pg_temp.id('box'), '{"at": "2024-05-31 10:00 Mars/Olympus"}')$$, '22023',
                 'field "at" of resource type "ft_box" takes timestamptz, not this JSON string: PostgreSQL does not read its time zone',
                 'a time zone name PostgreSQL does not know is the field''s error, without the value');
SELECT throws_ok($$SELECT toygun.update_resource(pg_temp.id('box'), '{"ports": [80, "http"]}')$$, '22023',
                 'field "ports" of resource type "ft_box" takes integer[], not this JSON array: its element 2 is a JSON string',
                 'an array names its element that is not of the type');
SELECT is(pg_temp.detail_of($$SELECT toygun.update_resource(pg_temp.id('box'), '{"size": "big"}')$$)
          || ' / ' || pg_temp.hint_of($$SELECT toygun.update_resource(pg_temp.id('box'), '{"size": "big"}')$$),
          'The value is "big". / Field "size" takes a JSON number without a fraction, from -2147483648 to 2147483647, or null to remove it.',
          'the detail shows the value, the hint what the type takes');

-- encrypted fields: checked before sealing, the value not shown
SELECT throws_ok($$SELECT toygun.update_resource(pg_temp.id('box'), '{"token": 42}')$$, '22023',
                 'field "token" of resource type "ft_box" takes text, not this JSON number',
                 'an encrypted field is checked against its type');
SELECT is(pg_temp.detail_of($$SELECT toygun.update_resource(pg_temp.id('box'), '{"token": 4242}')$$),
          'The field is encrypted, so the value is not shown.', 'the value of an encrypted field is not shown');
SELECT toygun.update_resource(pg_temp.id('box'), '{"token": "hunter2"}');
SELECT is((SELECT toygun.field(r, 'token') FROM toygun.resource r WHERE id = pg_temp.id('box')), '"hunter2"'::jsonb,
          'a value of the type is sealed, and reads back');

-- create_resource
SELECT throws_ok($$SELECT toygun.create_resource('ft_box', '{"ok": "yes"}')$$, '22023',
                 'field "ok" of resource type "ft_box" takes boolean, not this JSON string', 'create_resource checks');
SELECT lives_ok($$SELECT toygun.create_resource('ft_box', '{"ok": true, "size": null}')$$, 'and takes its values');

-- start_task, with fields given: typed fields are declared ones
SELECT throws_ok($$SELECT toygun.start_task(pg_temp.id('box'), 'job', '{"n": "one"}')$$, '22023',
                 'field "n" of task type "ft_box.job" takes integer, not this JSON string', 'start_task checks');
SELECT throws_ok($$SELECT toygun.start_task(pg_temp.id('box'), 'job', '{"secret": "x"}')$$, '22023',
                 'field "secret" of task type "ft_box.job" takes integer, not this JSON string',
                 'start_task checks an encrypted field before sealing it');
SELECT throws_ok($$SELECT toygun.start_task(pg_temp.id('box'), 'job', '{"other": 1}')$$, '42703',
                 'field "other" is not declared by task type "ft_box.job"',
                 'with fields given, a key neither listed nor typed is still refused');
INSERT INTO pg_temp.ids VALUES ('run', toygun.start_task(pg_temp.id('box'), 'job', '{"n": 1, "secret": 7, "note": "typed fields need not be listed"}'));
SELECT is((SELECT t.attrs->'n' FROM toygun.task t WHERE id = pg_temp.id('run')), '1'::jsonb,
          'a typed field not listed in fields is declared by its type');

-- outcomes' attrs
SELECT toygun.update_task(pg_temp.id('run'), '{"out": {"n": "two"}}');
SELECT throws_like($$SELECT toygun.tick_task(pg_temp.id('run'))$$, '%field "n" of task type "ft_box.job" takes integer, not this JSON string%',
                   'an outcome''s attrs are checked');
SELECT is((SELECT (state, step)::text FROM toygun.task WHERE id = pg_temp.id('run')), '(__new__,0)',
          'and the tick wrote nothing');
SELECT toygun.update_task(pg_temp.id('run'), '{"out": {"n": 2, "secret": null}}');
SELECT toygun.tick_task(pg_temp.id('run'));
SELECT is((SELECT (t.attrs->'n', t.attrs ? 'secret', t.state)::text FROM toygun.task t WHERE id = pg_temp.id('run')),
          '(2,f,two)', 'an outcome of the type is written, a null removes');

-- a stay's attrs
SELECT toygun.update_task(pg_temp.id('run'), '{"out": {"secret": 1.5}}');
SELECT throws_like($$SELECT toygun.tick_task(pg_temp.id('run'))$$, '%field "secret" of task type "ft_box.job" takes integer, not this JSON number: it has a fraction%',
                   'a stay''s attrs are checked, an encrypted field too');

-- transitions by hand
SELECT throws_ok($$SELECT toygun.transition_task(pg_temp.id('run'), 'one', '{"n": false}')$$, '22023',
                 'field "n" of task type "ft_box.job" takes integer, not this JSON boolean', 'transition_task checks');
SELECT throws_ok($$SELECT toygun.transition_resource(pg_temp.id('box'), 'down', '{"day": 20240531}')$$, '22023',
                 'field "day" of resource type "ft_box" takes date, not this JSON number', 'transition_resource checks');
SELECT lives_ok($$SELECT toygun.transition_resource(pg_temp.id('box'), 'down', '{"day": "2024-05-31"}')$$,
                'and takes values of the type');

-- update_task
SELECT throws_ok($$SELECT toygun.update_task(pg_temp.id('run'), '{"n": [1]}')$$, '22023',
                 'field "n" of task type "ft_box.job" takes integer, not this JSON array', 'update_task checks');
SELECT lives_ok($$SELECT toygun.update_task(pg_temp.id('run'), '{"n": 3}')$$, 'and takes values of the type');

-- periodic starts: at start_every, and at each firing
SELECT throws_ok($$SELECT toygun.start_every('ft_box', 'job', '0 3 * * *', '{"n": "x"}')$$, '22023',
                 'field "n" of task type "ft_box.job" takes integer, not this JSON string', 'start_every checks its args');
SELECT lives_ok($$SELECT toygun.start_every('ft_box', 'job', '0 3 * * *', '{"n": 5}')$$, 'and takes values of the type');
SELECT toygun.stop_task(pg_temp.id('run'), 'done');
INSERT INTO pg_temp.ids VALUES ('box2', toygun.create_resource('ft_box', '{}'));
SELECT toygun.run_schedule('ft_box', 'job') AS started \gset
SELECT ok(:started > 0 AND :started = (SELECT count(*) FROM toygun.task t WHERE t.attrs = '{"n": 5}'),
          'a firing starts runs with its args');

-- triggers: at define_trigger
SELECT throws_ok($$SELECT toygun.define_trigger('ft_box', 'up', 'job', '{"n": {}}')$$, '22023',
                 'field "n" of task type "ft_box.job" takes integer, not this JSON object', 'define_trigger checks its args');
SELECT lives_ok($$SELECT toygun.define_trigger('ft_box', 'up', 'job', '{"n": 6}')$$, 'and takes values of the type');
INSERT INTO pg_temp.ids VALUES ('box3', toygun.create_resource('ft_box', '{}'));
SELECT toygun.transition_resource(pg_temp.id('box3'), 'up');
SELECT is((SELECT t.attrs FROM toygun.task t WHERE t.resource_id = pg_temp.id('box3')), '{"n": 6}',
          'a trigger starts a run with its args');

-- redefinition changing types: stored values are not checked again until written
SELECT toygun.define_task('ft_box', 'job', '{one,two}', 'ft_job(toygun.task)',
    fields => '{out,note}', field_types => '{"n": "text", "secret": "integer"}',
    encrypted_fields => '{secret}');
SELECT is((SELECT t.attrs->'n' FROM toygun.task t WHERE id = pg_temp.id('run')), '3'::jsonb,
          'a redefinition leaves stored values as they are');
SET client_min_messages = error;   -- the firing's WARNING
SELECT toygun.run_schedule('ft_box', 'job') IS NULL AS failed \gset
RESET client_min_messages;
SELECT is((SELECT (:'failed'::boolean, last_error)::text FROM toygun.schedule WHERE task = 'job'),
          '(t,"22023: field ""n"" of task type ""ft_box.job"" takes text, not this JSON number")',
                 'a periodic start''s stored args are checked at each firing, against the type then');
SELECT throws_like($$SELECT toygun.transition_resource(pg_temp.id('box2'), 'up')$$,
                   '%field "n" of task type "ft_box.job" takes text, not this JSON number%',
                   'a trigger''s stored args are checked when it starts a run');
SELECT lives_ok($$SELECT toygun.update_task(pg_temp.id('run'), '{"n": "three"}')$$, 'the new type applies to the next write');
SELECT toygun.define_task('ft_box', 'job', '{one,two}', 'ft_job(toygun.task)', fields => '{out,note}');
SELECT throws_ok($$SELECT toygun.update_task(pg_temp.id('run'), '{"n": 3}')$$, '42703',
                 'field "n" is not declared by task type "ft_box.job"',
                 'redefined without field_types, a typed field is no longer declared');

-- definition: the checks, stored as given
SELECT is_empty($q$ SELECT * FROM pg_temp.mismatches(ARRAY[
    [$$SELECT toygun.define_resource('ft_bad', field_types => '["text"]')$$, '22023'],
    [$$SELECT toygun.define_resource('ft_bad', field_types => '"text"')$$, '22023'],
    [$$SELECT toygun.define_resource('ft_bad', field_types => '{"a": "int"}')$$, '22023'],
    [$$SELECT toygun.define_resource('ft_bad', field_types => '{"a": "jsonb[]"}')$$, '22023'],
    [$$SELECT toygun.define_resource('ft_bad', field_types => '{"a": "text[][]"}')$$, '22023'],
    [$$SELECT toygun.define_resource('ft_bad', field_types => '{"a": "TEXT"}')$$, '22023'],
    [$$SELECT toygun.define_resource('ft_bad', field_types => '{"a": 1}')$$, '22023'],
    [$$SELECT toygun.define_resource('ft_bad', field_types => '{"a": null}')$$, '22023'],
    [$$SELECT toygun.define_resource('ft_bad', field_types => '{"": "text"}')$$, '22023'],
    [$$SELECT toygun.define_resource('ft_bad', field_types => jsonb_build_object(repeat('x', 64), 'text'))$$, '42622'],
    [$$SELECT toygun.define_resource('ft_bad', field_types => '{"panic_message": "text"}')$$, '22023'],
    [$$SELECT toygun.define_resource('ft_bad', field_types => (SELECT jsonb_object_agg('f' || i, 'text') FROM generate_series(1, 1001) i))$$, '54000'],
    [$$SELECT toygun.define_task('ft_box', 'bad', '{a}', 'ft_job(toygun.task)', field_types => '{"a": "float"}')$$, '22023'],
    [$$SELECT toygun.define_resource('ft_ok', field_types => '{}')$$, 'ok'],
    [$$SELECT toygun.define_resource('ft_ok2', field_types => '{"a": "uuid[]", "b": "bigint[]", "c": "boolean[]", "d": "numeric[]", "e": "timestamptz[]"}')$$, 'ok']
]::text[]) $q$, 'field_types must be an object of valid field names and known types');
SELECT throws_ok($$SELECT toygun.define_task('ft_box', 'bad', '{a}', 'ft_job(toygun.task)', field_types => '{"a": "float"}')$$, '22023',
                 'field_types of task type "ft_box.bad" gives field "a" unknown type "float"',
                 'the error names the type and the entry');
SELECT is(pg_temp.hint_of($$SELECT toygun.define_resource('ft_bad', field_types => '{"a": "int"}')$$),
          'The types are: text, integer, bigint, numeric, boolean, timestamptz, date, uuid, jsonb, text[], integer[], bigint[], numeric[], boolean[], timestamptz[], date[], uuid[].',
          'the hint lists the types');
SELECT is((SELECT (field_types, (SELECT field_types FROM toygun.resource_type WHERE name = 'ft_ok'))::text
             FROM toygun.resource_type WHERE name = 'ft_ok2'),
          '("{""a"": ""uuid[]"", ""b"": ""bigint[]"", ""c"": ""boolean[]"", ""d"": ""numeric[]"", ""e"": ""timestamptz[]""}",)',
          'field_types is stored as given; an empty object as NULL');

SELECT * FROM finish();
ROLLBACK;
