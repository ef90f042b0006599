
-- Circuit breakers (issue 15): one row per task type defined with a breaker,
-- made at its first failed tick. closed: recent_failures holds the times of
-- its last failures within the breaker's window; at "failures" of them it
-- opens until open_until (opened_at + cooldown), and its runs are not ticked
-- until then (their run_at moves to open_until). The first run due after
-- that is the trial (half_open, trial_run, until the new open_until): its
-- success closes the breaker and releases the held runs, its failure opens it
-- again. alarm_run is the run the alarm of kind 'breaker' is raised on.
-- Runtime state: not dumped (a restored database starts with its breakers
-- closed). Private like the runs (read on the type).
CREATE TABLE toygun.breaker (
    resource_type    text NOT NULL,
    task             text NOT NULL,
    state            text NOT NULL DEFAULT 'closed'
                     CHECK (state IN ('closed', 'open', 'half_open')),
    recent_failures  timestamptz[] NOT NULL DEFAULT '{}',
    opened_at        timestamptz,
    open_until       timestamptz,
    trial_run        uuid,
    failures_at_open integer,
    alarm_run        uuid,
    opens            integer NOT NULL DEFAULT 0,
    closed_at        timestamptz,
    PRIMARY KEY (resource_type, task)
);
ALTER TABLE toygun.breaker ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.breaker FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));
GRANT SELECT ON toygun.breaker TO PUBLIC;
