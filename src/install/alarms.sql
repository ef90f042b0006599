
-- Alarms (issue 15): something about a resource or a run that needs a person
-- or a program. One open alarm per object and kind (the partial unique index):
-- raising it again counts it. A panic raises kind 'panic' on the run or
-- resource; repairing it closes it. When an alarm opens or re-opens, it is
-- offered to the alarm_handler of its resource's type, then of the parent
-- resource's type, and so on up, until one returns 'handled' (escalation:
-- one {type, resource, result, at} per offer). state is what was stored:
-- a snoozed alarm whose snoozed_until has passed reads as active in
-- toygun.alarms, and is stored active again by its next raise. Private as
-- the runs are (read on the type).
CREATE TABLE toygun.alarm (
    id              uuid PRIMARY KEY,
    object_id       uuid NOT NULL,
    object_kind     text NOT NULL CHECK (object_kind IN ('resource', 'task')),
    resource_type   text NOT NULL,   -- the object's resource type (a run's resource's)
    task            text,            -- a run's task name; NULL for a resource
    kind            text NOT NULL,
    state           text NOT NULL DEFAULT 'active'
                    CHECK (state IN ('active', 'snoozed', 'closed')),
    message         text NOT NULL,
    first_raised_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    last_raised_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    count           integer NOT NULL DEFAULT 1,
    snoozed_until   timestamptz,
    closed_at       timestamptz,
    closed_reason   text,
    closed_by       regrole,
    escalation      jsonb NOT NULL DEFAULT '[]',
    handled_by      text             -- the resource type whose alarm_handler took it
);
CREATE UNIQUE INDEX alarm_open_idx ON toygun.alarm (object_id, kind) WHERE state <> 'closed';
CREATE INDEX alarm_object_idx ON toygun.alarm (object_id);
SELECT pg_catalog.pg_extension_config_dump('toygun.alarm', '');
ALTER TABLE toygun.alarm ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.alarm FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));
GRANT SELECT ON toygun.alarm TO PUBLIC;

-- The alarms with their state as it is now: a snooze that has run out reads active.
CREATE VIEW toygun.alarms WITH (security_invoker = true) AS
    SELECT a.id, a.object_id, a.object_kind, a.resource_type, a.task, a.kind,
           CASE WHEN a.state OPERATOR(pg_catalog.=) 'snoozed'
                 AND a.snoozed_until OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
                THEN 'active' ELSE a.state END AS state,
           a.message, a.first_raised_at, a.last_raised_at, a.count, a.snoozed_until,
           a.closed_at, a.closed_reason, a.closed_by, a.escalation, a.handled_by
      FROM ONLY toygun.alarm a;
GRANT SELECT ON toygun.alarms TO PUBLIC;

-- Right operate on the object's type; kinds 'panic' and 'breaker' are toygun's own.
CREATE FUNCTION toygun.raise_alarm(object uuid, kind text, message text) RETURNS uuid
    AS 'MODULE_PATHNAME', 'toygun_raise_alarm' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.snooze_alarm(id uuid, until timestamptz) RETURNS toygun.alarm
    AS 'MODULE_PATHNAME', 'toygun_snooze_alarm' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.close_alarm(id uuid, reason text DEFAULT NULL) RETURNS toygun.alarm
    AS 'MODULE_PATHNAME', 'toygun_close_alarm' LANGUAGE C VOLATILE;
