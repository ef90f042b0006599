
-- Rights on a resource type and its task types, granted by its owner: read
-- (its rows and histories), start (resources, runs, periodic starts),
-- operate (ticks and moves by hand) and read_secrets (encrypted fields).
-- The owner, and every role with its privileges, has them all. A grant to
-- PUBLIC names role 0, which pg_dump writes as '-'.
CREATE TABLE toygun.type_grant (
    resource_type text NOT NULL,
    grantee       regrole NOT NULL,
    right_name    text NOT NULL
                  CHECK (right_name IN ('read', 'start', 'operate', 'read_secrets')),
    granted_by    regrole NOT NULL,
    granted_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (resource_type, grantee, right_name)
);
SELECT pg_catalog.pg_extension_config_dump('toygun.type_grant', '');

-- role is a role name as GRANT reads it, or public.
CREATE FUNCTION toygun.grant_type(resource_type text, role text, rights text[]) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_grant_type' LANGUAGE C VOLATILE;
-- rights NULL: every right.
CREATE FUNCTION toygun.revoke_type(resource_type text, role text, rights text[] DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_revoke_type' LANGUAGE C VOLATILE;
-- The same with a regrole: grant_type('t', 'app'::regrole, ...) or a role's OID.
CREATE FUNCTION toygun.grant_type(resource_type text, role regrole, rights text[]) RETURNS void
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC
        SELECT toygun.grant_type(grant_type.resource_type, grant_type.role::pg_catalog.text, grant_type.rights);
    END;
CREATE FUNCTION toygun.revoke_type(resource_type text, role regrole, rights text[] DEFAULT NULL)
    RETURNS void
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC
        SELECT toygun.revoke_type(revoke_type.resource_type, revoke_type.role::pg_catalog.text, revoke_type.rights);
    END;

-- The resource types whose rows the current user may read (as owner, or by
-- a grant of read to it or to PUBLIC), sorted. Row filters call it once per
-- query, as = ANY (((SELECT toygun.readable_types()))::text[]), never once
-- per row.
CREATE FUNCTION toygun.readable_types() RETURNS text[]
    AS 'MODULE_PATHNAME', 'toygun_readable_types' LANGUAGE C STABLE PARALLEL RESTRICTED;
-- The same, for error texts (last_error, failures): without grants to PUBLIC.
CREATE FUNCTION toygun.error_readable_types() RETURNS text[]
    AS 'MODULE_PATHNAME', 'toygun_error_readable_types' LANGUAGE C STABLE PARALLEL RESTRICTED;
-- The resource types on which the current user may start runs (as owner, or
-- by a grant of start to it or to PUBLIC), sorted; once per query, as
-- readable_types(). toygun.schedule shows a periodic start to them too.
CREATE FUNCTION toygun.startable_types() RETURNS text[]
    AS 'MODULE_PATHNAME', 'toygun_startable_types' LANGUAGE C STABLE PARALLEL RESTRICTED;

-- The grants of existing roles: a dropped role's grants reach nobody.
CREATE VIEW toygun.type_grants AS
    SELECT g.resource_type,
           CASE WHEN g.grantee::pg_catalog.oid OPERATOR(pg_catalog.=) 0 THEN 'public'
                ELSE g.grantee::pg_catalog.text END AS grantee,
           g.right_name, g.granted_by, g.granted_at
      FROM ONLY toygun.type_grant g
     WHERE g.grantee::pg_catalog.oid OPERATOR(pg_catalog.=) 0
        OR EXISTS (SELECT FROM pg_catalog.pg_roles r
                    WHERE r.oid OPERATOR(pg_catalog.=) g.grantee::pg_catalog.oid);

-- Private rows: a role reads the resources and runs of the types it may read.
-- The tables' owner (the API) and superusers (the workers) are not filtered:
-- policies are not forced, so the direct writes of store.c go on. The set of
-- readable types is computed once per query (an InitPlan), not per row.
ALTER TABLE toygun.resource ENABLE ROW LEVEL SECURITY;
ALTER TABLE toygun.task ENABLE ROW LEVEL SECURITY;
ALTER TABLE toygun.transition ENABLE ROW LEVEL SECURITY;
-- Its partitions have no policy: read by their own names, they show nothing
-- to anyone but the owner, whatever a default ACL granted (the time
-- partitions the workers make are the same, retention.c).
ALTER TABLE toygun.transition_forever ENABLE ROW LEVEL SECURITY;
ALTER TABLE toygun.transition_default ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON toygun.resource FOR SELECT
    USING (type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));
CREATE POLICY readable ON toygun.task FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));
CREATE POLICY readable ON toygun.transition FOR SELECT
    USING (resource_type OPERATOR(pg_catalog.=) ANY (((SELECT toygun.readable_types()))::pg_catalog.text[]));
