
-- Triggers: when a resource of resource_type enters on_state (a move into it
-- from another state, by a tick or by hand), task is started on it with
-- args, in the same transaction, acting for owner (the role that defined
-- the trigger), as start_task starts it: a live run means nothing starts.
CREATE TABLE toygun.trigger (
    resource_type text NOT NULL,
    on_state      text NOT NULL,          -- a declared state of the type, or __panic__
    task          text NOT NULL,
    args          jsonb NOT NULL DEFAULT '{}',   -- the attrs each run starts with
    owner         regrole NOT NULL,       -- the role that defined it; starts act for it
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    PRIMARY KEY (resource_type, on_state, task)
);
SELECT pg_catalog.pg_extension_config_dump('toygun.trigger', '');

CREATE FUNCTION toygun.define_trigger(resource_type text, on_state text, task text,
                                      args jsonb DEFAULT '{}') RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_define_trigger' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.drop_trigger(resource_type text, on_state text, task text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'toygun_drop_trigger' LANGUAGE C VOLATILE;

-- Private like the runs: a trigger (its args are the attrs its runs start
-- with) shows only to roles that may read its resource type.
GRANT SELECT ON toygun.trigger TO PUBLIC;
ALTER TABLE toygun.trigger ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.trigger FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));
