
-- Messages to runs (issue 14): send() stores one and makes the run due;
-- its handler takes them with receive(), in order, in its tick's
-- transaction. seq orders them. Private like the runs.
CREATE SEQUENCE toygun.message_seq;
CREATE TABLE toygun.message (
    run_id        uuid NOT NULL,
    seq           bigint NOT NULL DEFAULT pg_catalog.nextval('toygun.message_seq'),
    resource_type text NOT NULL,
    message       jsonb NOT NULL,
    sent_at       timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    sent_by       regrole NOT NULL,
    -- false: the run may not have been made due for it yet (a child's end,
    -- written while the parent was locked); the workers see to it
    swept         boolean NOT NULL DEFAULT true,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX message_unswept_idx ON toygun.message (run_id) WHERE NOT swept;
SELECT pg_catalog.pg_extension_config_dump('toygun.message', '');
SELECT pg_catalog.pg_extension_config_dump('toygun.message_seq', '');
ALTER TABLE toygun.message ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.message FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));
GRANT SELECT ON toygun.message TO PUBLIC;

CREATE FUNCTION toygun.send(run uuid, message jsonb) RETURNS bigint
    AS 'MODULE_PATHNAME', 'toygun_send' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.receive(t toygun.task) RETURNS SETOF jsonb
    AS 'MODULE_PATHNAME', 'toygun_receive' LANGUAGE C VOLATILE;
