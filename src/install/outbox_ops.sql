-- The outbox to the operator (issue 18): what is pending, failed and
-- delivered, and sending a row again. The extension's owner only (and
-- superusers), as the outbox itself: a row's channel, payload and error may
-- name what only the owner sees. Failed, as the deliverer marks it: not
-- delivered, an error, and no retry to come (attempts reached its maximum,
-- a permanent error, or a dropped channel); pending: the other undelivered
-- rows (new, or waiting for a retry at next_attempt_at).

-- An alarm's deliveries (the dashboard's alarms page), delivered ones too.
CREATE INDEX outbox_alarm_idx ON toygun.outbox (alarm_id, id);

CREATE FUNCTION toygun._outbox_owner() RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    RETURN pg_catalog.pg_has_role((SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'toygun'),
                                  'USAGE');

-- toygun.list_outbox's body (PL/pgSQL takes no parameter and result column of one name)
CREATE FUNCTION toygun._list_outbox(p_state text, p_limit integer, p_after bigint)
    RETURNS TABLE (o_id bigint, o_channel text, o_alarm_id uuid, o_event text, o_state text, o_attempts integer,
                   o_created_at timestamptz, o_next_attempt_at timestamptz, o_delivered_at timestamptz,
                   o_delivered_by text, o_last_error text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF NOT toygun._outbox_owner() THEN
        RAISE EXCEPTION 'permission denied to read the toygun outbox'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Only the extension''s owner (or a member of its role, or a superuser) reads toygun.outbox.';
    END IF;
    IF p_state IS NULL OR p_state NOT IN ('pending', 'failed', 'delivered', 'all') THEN
        RAISE EXCEPTION 'outbox state "%" is not one toygun.list_outbox knows', COALESCE(p_state, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Ask for pending, failed, delivered or all.';
    END IF;
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 1000 THEN
        RAISE EXCEPTION 'limit % is out of range for toygun.list_outbox', COALESCE(p_limit::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Ask for 1 to 1000 outbox rows a page.';
    END IF;
    -- newest first; the undelivered ones through outbox_pending_idx
    RETURN QUERY
        SELECT o.id, o.channel, o.alarm_id, o.event,
               CASE WHEN o.delivered_at IS NOT NULL THEN 'delivered'
                    WHEN o.next_attempt_at IS NULL AND o.last_error IS NOT NULL THEN 'failed'
                    ELSE 'pending' END,
               o.attempts, o.created_at, o.next_attempt_at, o.delivered_at, o.delivered_by, o.last_error
          FROM toygun.outbox o
         WHERE (p_after IS NULL OR o.id < p_after)
           AND CASE p_state
                   WHEN 'all' THEN true
                   WHEN 'delivered' THEN o.delivered_at IS NOT NULL
                   WHEN 'failed' THEN o.delivered_at IS NULL AND o.next_attempt_at IS NULL AND o.last_error IS NOT NULL
                   ELSE o.delivered_at IS NULL AND NOT (o.next_attempt_at IS NULL AND o.last_error IS NOT NULL)
               END
         ORDER BY o.id DESC LIMIT p_limit;
END $$;

-- Outbox rows newest first, by state: pending, failed, delivered or all.
-- after: the id of the previous page's last row.
CREATE FUNCTION toygun.list_outbox(state text DEFAULT 'pending', "limit" integer DEFAULT 50, after bigint DEFAULT NULL)
    RETURNS TABLE (id bigint, channel text, alarm_id uuid, event text, state text, attempts integer,
                   created_at timestamptz, next_attempt_at timestamptz, delivered_at timestamptz,
                   delivered_by text, last_error text)
    LANGUAGE sql STABLE
    BEGIN ATOMIC
        SELECT * FROM toygun._list_outbox(list_outbox.state, list_outbox."limit", list_outbox.after);
    END;

-- Send an undelivered row again: attempts, last_error and next_attempt_at
-- are reset, so a deliverer claims it at once (NOTIFY toygun_outbox at
-- commit). False: no such row. A delivered row is refused (55000).
CREATE FUNCTION toygun.redeliver(outbox_id bigint) RETURNS boolean
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    done timestamptz;
BEGIN
    IF NOT toygun._outbox_owner() THEN
        RAISE EXCEPTION 'permission denied to redeliver toygun outbox row %', redeliver.outbox_id
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Only the extension''s owner (or a member of its role, or a superuser) sends outbox rows again.';
    END IF;
    SELECT o.delivered_at INTO done FROM toygun.outbox o WHERE o.id = redeliver.outbox_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF done IS NOT NULL THEN
        RAISE EXCEPTION 'toygun outbox row % was delivered at %', redeliver.outbox_id, done
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'A delivered row is not sent twice; raise the alarm again if it must reach its channel anew.';
    END IF;
    UPDATE toygun.outbox o SET attempts = 0, last_error = NULL, next_attempt_at = NULL
     WHERE o.id = redeliver.outbox_id;
    PERFORM pg_catalog.pg_notify('toygun_outbox', redeliver.outbox_id::text);
    RETURN true;
END $$;

-- toygun.metrics()'s outbox gauges: the owner's only (no row for others).
CREATE FUNCTION toygun._outbox_gauges() RETURNS TABLE (pending bigint, failed bigint)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF toygun._outbox_owner() THEN
        RETURN QUERY
            SELECT pg_catalog.count(*) FILTER (WHERE NOT (o.next_attempt_at IS NULL AND o.last_error IS NOT NULL)),
                   pg_catalog.count(*) FILTER (WHERE o.next_attempt_at IS NULL AND o.last_error IS NOT NULL)
              FROM toygun.outbox o WHERE o.delivered_at IS NULL;
    END IF;
END $$;
GRANT EXECUTE ON FUNCTION toygun._outbox_gauges() TO PUBLIC;
