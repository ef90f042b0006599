-- Waiting for children: a run started by a handler records its parent run,
-- and its end is a message to the parent, which is made due.
BEGIN;
\ir ../fixtures.sql
SELECT plan(12);

CREATE FUNCTION public.c_parent(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
DECLARE
    ended jsonb := (SELECT coalesce(jsonb_agg(m ORDER BY m->>'task'), '[]') FROM toygun.receive(t) m);
    done jsonb := coalesce(t.attrs->'ended', '[]') || ended;
BEGIN
    IF t.state = 'fanning' THEN
        PERFORM toygun.start_task(t.resource_id, 'child_a'), toygun.start_task(t.resource_id, 'child_b');
        RETURN toygun.go('waiting');
    END IF;
    IF jsonb_array_length(done) = 2 THEN
        RETURN toygun.stop(jsonb_build_object('ended', done));
    END IF;
    RETURN toygun.stay(jsonb_build_object('ended', done), '1 hour');
END $$;
CREATE FUNCTION public.c_child(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT CASE WHEN t.attrs ? 'fail' THEN toygun.panic('child failed') ELSE toygun.stop() END
$$;
SELECT toygun.define_resource('fan');
SELECT toygun.define_task('fan', 'parent', '{fanning,waiting}', 'c_parent(toygun.task)');
SELECT toygun.define_task('fan', 'child_a', '{working}', 'c_child(toygun.task)');
SELECT toygun.define_task('fan', 'child_b', '{working}', 'c_child(toygun.task)');
SELECT toygun.create_resource('fan') AS r \gset
SELECT toygun.start_task(:'r', 'parent') AS p \gset

SELECT ok((SELECT parent_run IS NULL FROM toygun.task WHERE id = :'p'), 'a run started by hand has no parent run');
SELECT is((SELECT state FROM toygun.tick_task(:'p')), 'waiting', 'the parent fans out and waits');
SELECT id AS a FROM toygun.task WHERE resource_id = :'r' AND name = 'child_a' \gset
SELECT id AS b FROM toygun.task WHERE resource_id = :'r' AND name = 'child_b' \gset
SELECT is((SELECT array_agg(DISTINCT parent_run) FROM toygun.task WHERE id IN (:'a', :'b')), ARRAY[:'p'::uuid],
          'runs started by its handler record it as their parent');
SELECT ok((SELECT run_at > clock_timestamp() + interval '50 minutes' FROM toygun.tick_task(:'p')),
          'the parent waits an hour');

SELECT is((SELECT state FROM toygun.tick_task(:'a')), '__stop__', 'a child stops');
SELECT ok((SELECT run_at <= clock_timestamp() FROM toygun.task WHERE id = :'p'), 'and its parent is due at once');
SELECT is((SELECT message FROM toygun.message WHERE run_id = :'p'),
          jsonb_build_object('child', :'a'::text, 'task', 'child_a', 'state', '__stop__'),
          'with a message naming the child, its task and its end');
SELECT is((SELECT jsonb_array_length(attrs->'ended') FROM toygun.tick_task(:'p')), 1,
          'the parent receives it and waits for the other');

UPDATE toygun.task SET attrs = '{"fail": true}' WHERE id = :'b';
SELECT is((SELECT state FROM toygun.tick_task(:'b')), '__panic__', 'the other child panics');
SELECT ok((SELECT run_at <= clock_timestamp() FROM toygun.task WHERE id = :'p'), 'which makes the parent due too');
SELECT is((SELECT ARRAY[state, attrs->'ended'->1->>'state'] FROM toygun.tick_task(:'p')), ARRAY['__stop__', '__panic__'],
          'the parent ends once both children have, knowing how each ended');

-- a child of a run that has ended already: the message is kept, nothing is due
SELECT toygun.start_task(:'r', 'child_a') AS late \gset
UPDATE toygun.task SET parent_run = :'p' WHERE id = :'late';
SELECT toygun.tick_task(:'late') IS NOT NULL AS ticked \gset
SELECT ok((SELECT run_at IS NULL FROM toygun.task WHERE id = :'p'), 'a stopped parent is not made due by a late child');

SELECT * FROM finish();
ROLLBACK;
