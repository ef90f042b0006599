
-- Renames (issue 16): rename_state(), rename_task() and rename_resource_type()
-- change a name wherever a row uses it as a key, in one transaction (see
-- README, "Renames"); the history's from_state, to_state and note keep the
-- names of their time. Each rename is recorded here: kind, the names before
-- and after, who and when, and how many live objects were renamed (for a
-- state: moved to the new name). resource_type is the type's name now, and
-- task, for a state of a task type, the task's name now: a later rename
-- updates them, as it updates every key (row-level security filters on
-- resource_type, as on the runs).
CREATE SEQUENCE toygun.rename_seq;
CREATE TABLE toygun.rename (
    id            bigint PRIMARY KEY DEFAULT pg_catalog.nextval('toygun.rename_seq'),
    kind          text NOT NULL CHECK (kind IN ('resource_type', 'task', 'state')),
    resource_type text NOT NULL,
    task          text,
    old_name      text NOT NULL,
    new_name      text NOT NULL,
    renamed_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    renamed_by    regrole NOT NULL,
    live_objects  bigint NOT NULL
);
ALTER SEQUENCE toygun.rename_seq OWNED BY toygun.rename.id;
CREATE INDEX rename_type_idx ON toygun.rename (resource_type);
SELECT pg_catalog.pg_extension_config_dump('toygun.rename', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.rename_seq', '');
ALTER TABLE toygun.rename ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.rename FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));
GRANT SELECT ON toygun.rename TO PUBLIC;

-- For roles that may act for the type's owner (as define_* are). task NULL:
-- a state of the resource type.
CREATE FUNCTION toygun.rename_state(resource_type text, task text, old text, new text) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_rename_state' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.rename_task(resource_type text, old text, new text) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_rename_task' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.rename_resource_type(old text, new text) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_rename_resource_type' LANGUAGE C VOLATILE;
