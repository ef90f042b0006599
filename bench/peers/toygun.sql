-- toygun's side of the benchmark: one resource type and one task type per
-- workload, with handlers that do as little as the peers' no-op jobs.
CREATE EXTENSION IF NOT EXISTS toygun;

-- The resources the timed runs start on, numbered so a workload can take
-- the first n of them.
CREATE TABLE public.bench_resource (i int PRIMARY KEY, id uuid NOT NULL);
-- W3: when each handler began.
CREATE TABLE public.bench_latency (seq int PRIMARY KEY, at timestamptz NOT NULL);

-- W1 and W4: one state that stops at once.
CREATE FUNCTION public.bench_noop(t toygun.task) RETURNS toygun.next
    LANGUAGE sql AS 'SELECT toygun.stop()';

-- W2: three states, one after the other.
CREATE FUNCTION public.bench_chain(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT CASE t.state WHEN 'one' THEN toygun.go('two')
                        WHEN 'two' THEN toygun.go('three')
                        ELSE toygun.stop() END
$$;

-- W3: the time the handler begins, and a word to the client waiting for it
-- (delivered when the tick commits).
CREATE FUNCTION public.bench_latency(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.bench_latency (seq, at) VALUES ((t.attrs->>'seq')::int, clock_timestamp());
    PERFORM pg_notify('bench_latency', t.attrs->>'seq');
    RETURN toygun.stop();
END $$;

-- W7: the slow tick that keeps one worker busy (when it began; the row's
-- xmin is the tick's transaction, whose commit timestamp is when it ended),
-- and the fast runs started beside it (the row's xmin likewise gives the
-- commit of each fast run's first tick).
CREATE TABLE public.bench_slow (cycle int PRIMARY KEY, began timestamptz NOT NULL);
CREATE TABLE public.bench_wake (seq int PRIMARY KEY, at timestamptz NOT NULL);

CREATE FUNCTION public.bench_slow(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.bench_slow (cycle, began) VALUES ((t.attrs->>'cycle')::int, clock_timestamp());
    PERFORM pg_sleep((t.attrs->>'seconds')::float8);
    RETURN toygun.stop();
END $$;

CREATE FUNCTION public.bench_wake(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.bench_wake (seq, at) VALUES ((t.attrs->>'seq')::int, clock_timestamp());
    PERFORM pg_notify('bench_wake', t.attrs->>'seq');
    RETURN toygun.stop();
END $$;

-- W6: ten states, s1 to s10.
CREATE FUNCTION public.bench_ten(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT CASE WHEN t.state = 's10' THEN toygun.stop()
                ELSE toygun.go('s' || (substr(t.state, 2)::int + 1)) END
$$;

SELECT toygun.define_resource('bench');
SELECT toygun.define_task('bench', 'w1', '{only}', 'public.bench_noop(toygun.task)');
SELECT toygun.define_task('bench', 'w2', '{one,two,three}', 'public.bench_chain(toygun.task)');
SELECT toygun.define_task('bench', 'w3', '{only}', 'public.bench_latency(toygun.task)');
SELECT toygun.define_task('bench', 'w4', '{only}', 'public.bench_noop(toygun.task)');
SELECT toygun.define_task('bench', 'w6', '{s1,s2,s3,s4,s5,s6,s7,s8,s9,s10}', 'public.bench_ten(toygun.task)');
SELECT toygun.define_task('bench', 'w7', '{only}', 'public.bench_wake(toygun.task)');
SELECT toygun.define_task('bench', 'w7slow', '{only}', 'public.bench_slow(toygun.task)');
-- W8: toygun.wait() on a run that holds an hour in its one state, and
-- stops at once once its attrs say go.
CREATE FUNCTION public.bench_hold(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT CASE WHEN t.attrs ? 'go' THEN toygun.stop() ELSE toygun.stay(NULL, '1 hour') END
$$;
SELECT toygun.define_task('bench', 'w8', '{hold}', 'public.bench_hold(toygun.task)');

-- W1p (issue 17, priorities): W1's one state, half its runs started at
-- priority 1.
SELECT toygun.define_task('bench', 'w1p', '{only}', 'public.bench_noop(toygun.task)');

-- W9 (issue 17, priorities), on a resource type of its own without a
-- handler (its resources are never ticked): a backlog of runs that stay
-- due (a wait of 0) until public.bench_w9_stop has a row, and the timed
-- runs, which note when their handler began (as W3), and when the
-- transaction of the worker's batch began (its claim came after) and which
-- worker it was, then stop.
CREATE TABLE public.bench_w9_resource (i int PRIMARY KEY, id uuid NOT NULL);
CREATE TABLE public.bench_w9 (seq int PRIMARY KEY, at timestamptz NOT NULL, batch timestamptz NOT NULL, pid int NOT NULL);
CREATE TABLE public.bench_w9_stop (stop boolean);
CREATE FUNCTION public.bench_backlog(t toygun.task) RETURNS toygun.next LANGUAGE sql AS $$
    SELECT CASE WHEN EXISTS (SELECT FROM public.bench_w9_stop) THEN toygun.stop() ELSE toygun.stay(NULL, '0') END
$$;
CREATE FUNCTION public.bench_priority(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.bench_w9 (seq, at, batch, pid) VALUES ((t.attrs->>'seq')::int, clock_timestamp(), now(), pg_backend_pid());
    RETURN toygun.stop();
END $$;
SELECT toygun.define_resource('bench_w9');
SELECT toygun.define_task('bench_w9', 'w9backlog', '{only}', 'public.bench_backlog(toygun.task)');
SELECT toygun.define_task('bench_w9', 'w9', '{only}', 'public.bench_priority(toygun.task)');

-- W11 (issue 17, rate limits): a limit of 1,000 per second with a burst of
-- 100; (a) a one-state task type that takes a token of it every tick, on a
-- resource type of its own without a handler (its resources are never
-- ticked); (b) another limit, the same, for toygun.take_token() in a loop.
SELECT toygun.define_rate_limit('w11', 1000, '1 second', 100);
SELECT toygun.define_rate_limit('w11_sql', 1000, '1 second', 100);
SELECT toygun.define_resource('bench_w11');
SELECT toygun.define_task('bench_w11', 'w11', '{only}', 'public.bench_noop(toygun.task)', rate_limit => 'w11');
-- W11 (b): take tokens of w11_sql in a loop until t0 + lead + len; the
-- tokens granted within [t0 + lead, t0 + lead + len), on the server's clock.
CREATE FUNCTION public.bench_take_tokens(t0 timestamptz, lead interval, len interval) RETURNS bigint
    LANGUAGE plpgsql AS $$
DECLARE
    n bigint := 0;
    took boolean;
    at timestamptz;
BEGIN
    LOOP
        took := toygun.take_token('w11_sql');
        at := clock_timestamp();
        EXIT WHEN at >= t0 + lead + len;
        IF took AND at >= t0 + lead THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END $$;

-- W10 (issue 17, concurrency limits): a type limited to 10 runs at once per
-- tenant; tenant A floods it, tenant B's runs (attrs seq) write when their
-- handler begins. Resources of a type of their own, without a handler.
CREATE TABLE public.bench_w10 (seq int PRIMARY KEY, at timestamptz NOT NULL);
CREATE FUNCTION public.bench_w10(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    IF t.attrs ? 'seq' THEN
        INSERT INTO public.bench_w10 (seq, at) VALUES ((t.attrs->>'seq')::int, clock_timestamp());
    END IF;
    RETURN toygun.stop();
END $$;
SELECT toygun.define_resource('bench_w10');
SELECT toygun.define_task('bench_w10', 'w10', '{only}', 'public.bench_w10(toygun.task)',
                          concurrency_key => 'tenant', max_per_key => 10);
