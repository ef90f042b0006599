-- The worked example of README.md (Getting started), ticked by hand, and the shape of the API.
CREATE EXTENSION toygun;

SELECT toygun.define_resource('example');
CREATE FUNCTION example_echo(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  CASE t.state
  WHEN 'one' THEN RETURN toygun.go('two', '{"something": [1,2,3]}');
  WHEN 'two' THEN RAISE NOTICE 'two %', t.attrs->'something'; RETURN toygun.stop();
  END CASE;
END $$;
SELECT toygun.define_task('example', 'echo', '{one,two}', 'example_echo(toygun.task)');
SELECT name, states, handler, fields, encrypted_fields, owner, search_path FROM toygun.task_type;

SELECT toygun.create_resource('example') AS r \gset
SELECT toygun.start_task(:'r', 'echo') AS t \gset
SELECT state, attrs, step, attempts, last_error, run_at IS NOT NULL AS due FROM toygun.task WHERE id = :'t';
SELECT state, step, attrs FROM toygun.tick_task(:'t');
SELECT state, step, attrs FROM toygun.tick_task(:'t');
SELECT state, step, run_at IS NULL AS parked FROM toygun.tick_task(:'t');
SELECT step, from_state, to_state, note FROM toygun.history(:'t');
SELECT toygun.is_running(:'r', 'echo'), (toygun.task_for(:'r', 'echo')).state;
SELECT state, step FROM toygun.tick_resource(:'r');
SELECT step, from_state, to_state FROM toygun.history(:'r');

-- outcomes are plain composites
SELECT toygun.go('two'), toygun.go('two', '{"a": 1}'), toygun.stop();
SELECT toygun.stay('{"x": true}', '5 minutes'), toygun.panic('on fire');
SELECT (toygun.stay()).*;

-- the tables and their columns
\d toygun.task
\d toygun.resource
\d toygun.transition

SET client_min_messages = warning;
DROP EXTENSION toygun CASCADE;
