
-- Notifications (issue 15): alarms that open, re-open and close are written
-- to toygun.outbox, one row per channel that a route matches, in the
-- transaction that opened, re-opened or closed the alarm, with the payload
-- already in the channel kind's shape; NOTIFY toygun_outbox (payload: the
-- row's id) wakes a deliverer at commit. Nothing is sent from PostgreSQL.
-- Channels hold secrets (webhook URLs, routing keys, addresses): these three
-- tables are the extension owner's only, not granted to PUBLIC at all, and
-- only the owner (and superusers) define channels and routes.
CREATE TABLE toygun.channel (
    name       text PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('webhook', 'slack', 'pagerduty', 'email')),
    config     jsonb NOT NULL,       -- checked per kind by define_channel()
    created_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
SELECT pg_catalog.pg_extension_config_dump('toygun.channel', '');

-- pattern: 'kind:<alarm kind>' or 'type:<resource type>', '*' for every one.
CREATE TABLE toygun.route (
    pattern    text NOT NULL,
    channel    text NOT NULL REFERENCES toygun.channel (name) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    PRIMARY KEY (pattern, channel)
);
CREATE INDEX route_channel_idx ON toygun.route (channel);
SELECT pg_catalog.pg_extension_config_dump('toygun.route', '');

-- What a deliverer sends: it takes rows FOR UPDATE SKIP LOCKED, sends each
-- payload to its channel, and sets delivered_at and delivered_by (or counts
-- attempts, sets last_error and, for a retry, next_attempt_at). Rows are
-- kept: deleting delivered ones is the deliverer's (or the operator's)
-- choice. The pending index holds the undelivered rows, failed ones too
-- (attempts at the deliverer's maximum) until they are delivered or deleted.
CREATE SEQUENCE toygun.outbox_seq;
CREATE TABLE toygun.outbox (
    id           bigint PRIMARY KEY DEFAULT pg_catalog.nextval('toygun.outbox_seq'),
    channel      text NOT NULL,      -- its name when written (not a key: a dropped channel's rows stay)
    alarm_id     uuid NOT NULL,
    event        text NOT NULL CHECK (event IN ('open', 'reopen', 'close')),
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    attempts     integer NOT NULL DEFAULT 0,
    delivered_at timestamptz,
    last_error   text,
    next_attempt_at timestamptz,     -- a retry waits until then (NULL: at once)
    delivered_by text                -- the deliverer that sent it (host:pid)
);
ALTER SEQUENCE toygun.outbox_seq OWNED BY toygun.outbox.id;
CREATE INDEX outbox_pending_idx ON toygun.outbox (id) WHERE delivered_at IS NULL;
-- a deliverer sends one alarm's events to a channel in order: it claims a row
-- only when no earlier row of its alarm and channel is pending
CREATE INDEX outbox_alarm_pending_idx ON toygun.outbox (alarm_id, id) WHERE delivered_at IS NULL;
SELECT pg_catalog.pg_extension_config_dump('toygun.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.outbox_seq', '');
REVOKE ALL ON toygun.channel, toygun.route, toygun.outbox FROM PUBLIC;

-- The extension's owner (or a superuser) only. Defining a channel again
-- replaces its kind and config; dropping it drops its routes.
CREATE FUNCTION toygun.define_channel(name text, kind text, config jsonb) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_define_channel' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.drop_channel(name text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'toygun_drop_channel' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.define_route(pattern text, channel text) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_define_route' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.drop_route(pattern text, channel text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'toygun_drop_route' LANGUAGE C VOLATILE;
