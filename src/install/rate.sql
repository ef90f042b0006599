
-- Rate limits (issue 17, flow control): token buckets by name. A limit lets
-- rate tokens through per interval per, up to burst at once (NULL: rate);
-- a task type naming one (define_task's rate_limit) takes a token for each
-- tick, and any SQL may take tokens with take_token(). The buckets live in
-- shared memory (a GCRA on one word per limit, src/rate.c): after a restart
-- they start full, and a token taken is spent even if its transaction rolls
-- back. The definer owns a limit: only roles with its privileges redefine or
-- drop it, take its tokens, name it in a task type or see it.
CREATE TABLE toygun.rate_limit (
    name       text PRIMARY KEY,
    rate       integer NOT NULL,
    per        interval NOT NULL,
    burst      integer NOT NULL,
    owner      regrole NOT NULL,
    defined_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
SELECT pg_catalog.pg_extension_config_dump('toygun.rate_limit', '');
ALTER TABLE toygun.rate_limit ENABLE ROW LEVEL SECURITY;
CREATE POLICY owned ON toygun.rate_limit FOR SELECT
    USING (pg_catalog.pg_has_role(owner::pg_catalog.oid, 'USAGE'));
GRANT SELECT ON toygun.rate_limit TO PUBLIC;

CREATE FUNCTION toygun.define_rate_limit(name text, rate integer, per interval,
                                         burst integer DEFAULT NULL) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_define_rate_limit' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.drop_rate_limit(name text) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_drop_rate_limit' LANGUAGE C VOLATILE;
-- true: weight tokens were taken; false: not that many now (nothing taken).
CREATE FUNCTION toygun.take_token(name text, weight integer DEFAULT 1) RETURNS boolean
    AS 'MODULE_PATHNAME', 'toygun_take_token' LANGUAGE C VOLATILE;
-- The limits the caller has the owner's privileges of: tokens is what a
-- take could have now, horizon the time until which runs are held (NULL:
-- none). Both NULL without toygun in shared_preload_libraries.
CREATE FUNCTION toygun.rate_limit_status()
    RETURNS TABLE (name text, rate integer, per interval, burst integer, tokens integer,
                   horizon timestamptz)
    AS 'MODULE_PATHNAME', 'toygun_rate_limit_status' LANGUAGE C VOLATILE;
