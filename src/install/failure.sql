
-- Failed ticks (issue 13): one row per failed attempt of a resource or run,
-- an error its tick raised or a tick that ended its worker (charged by the
-- next worker), written by failure.c in the transaction that records the
-- failure, never on a successful tick. failure_no numbers an object's
-- failures from 1 and never restarts (attempt does, after a successful tick
-- or a move by hand); only the last toygun.failures_kept of each object are
-- kept. at is when the failed tick began, duration how long it ran (NULL if
-- its worker died without a word), worker_pid the worker that ran it.
CREATE TABLE toygun.failure (
    object_id     uuid NOT NULL,
    failure_no    integer NOT NULL,
    resource_type text NOT NULL,
    attempt       integer NOT NULL,
    at            timestamptz NOT NULL,
    duration      interval,
    error         text NOT NULL,
    worker_pid    integer,
    PRIMARY KEY (object_id, failure_no)
);
SELECT pg_catalog.pg_extension_config_dump('toygun.failure', '');

-- Private as last_error() is: the rows of the types the caller may read,
-- but not through a grant to PUBLIC (error_readable_types()).
ALTER TABLE toygun.failure ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.failure FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.error_readable_types()))::pg_catalog.text[]));
GRANT SELECT ON toygun.failure TO PUBLIC;
