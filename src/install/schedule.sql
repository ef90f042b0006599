
-- Periodic starts on pg_cron. A schedule starts a task on every live resource
-- of a type at most once per bucket (the fire time a firing belongs to).
-- pg_cron is optional: nothing here refers to it until start_every() runs.

CREATE SEQUENCE toygun.schedule_seq;

-- One row per periodic start; its pg_cron job runs toygun.run_schedule().
CREATE TABLE toygun.schedule (
    id            bigint PRIMARY KEY DEFAULT pg_catalog.nextval('toygun.schedule_seq'),
    resource_type text NOT NULL,
    task          text NOT NULL,
    schedule      text NOT NULL,          -- as given to start_every
    cron          text NOT NULL,          -- the cron expression pg_cron fires it on (GMT)
    args          jsonb NOT NULL,         -- the attrs each run starts with
    owner         regrole NOT NULL,       -- the role that called start_every; firings act for it
    job_name      text NOT NULL,          -- the pg_cron job, in cron.job
    job_id        bigint,
    last_bucket   timestamptz,            -- the latest bucket fired
    last_started  bigint NOT NULL DEFAULT 0,   -- runs that bucket started
    last_fired_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    states        text[],                 -- the resource states it starts in; NULL: every live one
    last_error    text,                   -- why the last firing failed; NULL once one succeeds
    next_fire_at  timestamptz,            -- when its cron expression fires next (GMT)
    last_declined bigint NOT NULL DEFAULT 0,   -- resources the task type's should_start declined that bucket
    UNIQUE (resource_type, task)
);
ALTER SEQUENCE toygun.schedule_seq OWNED BY toygun.schedule.id;

-- The resources a bucket has claimed: a firing claims (schedule, bucket,
-- resource) before it starts a run there, so a repeated or overlapping
-- firing of the bucket starts nothing twice. Only the latest bucket's claims
-- are kept: a firing that opens a new bucket deletes the older ones.
CREATE TABLE toygun.schedule_start (
    schedule_id bigint NOT NULL,
    bucket      timestamptz NOT NULL,
    resource_id uuid NOT NULL,
    PRIMARY KEY (schedule_id, bucket, resource_id)
);

SELECT pg_catalog.pg_extension_config_dump('toygun.schedule', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.schedule_seq', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.schedule_start', '');

CREATE FUNCTION toygun.start_every(resource_type text, task text, schedule text,
                                   args jsonb DEFAULT '{}', states text[] DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'toygun_start_every' LANGUAGE C VOLATILE;

CREATE FUNCTION toygun.stop_every(resource_type text, task text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'toygun_stop_every' LANGUAGE C VOLATILE;

-- The command of the pg_cron job; at picks a bucket by hand (tests, repair).
CREATE FUNCTION toygun.run_schedule(resource_type text, task text, at timestamptz DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'toygun_run_schedule' LANGUAGE C VOLATILE;

-- The bucket a firing at time at belongs to: the latest fire time at or before it.
CREATE FUNCTION toygun.schedule_bucket(schedule text, at timestamptz DEFAULT pg_catalog.now())
    RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'toygun_schedule_bucket' LANGUAGE C STABLE PARALLEL SAFE;

GRANT SELECT ON toygun.schedule, toygun.schedule_start TO PUBLIC;

-- Private like the runs: a periodic start (its args are the attrs its runs
-- start with, its last error) shows only to roles that may read its resource
-- type or start on it, and the resources its firings claimed only to roles
-- that may read it. The firings run as the tables' owner, which the policies
-- do not filter.
ALTER TABLE toygun.schedule ENABLE ROW LEVEL SECURITY;
ALTER TABLE toygun.schedule_start ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.schedule FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[])
        OR resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.startable_types()))::pg_catalog.text[]));
-- the schedules of the types the caller reads, once per query
CREATE POLICY readable ON toygun.schedule_start FOR SELECT
    USING (schedule_id OPERATOR(pg_catalog.=) ANY (((SELECT pg_catalog.array_agg(s.id) FROM ONLY toygun.schedule s
                                                      WHERE s.resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[])))::pg_catalog.int8[]));
