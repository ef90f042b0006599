
-- What a handler returns: go to a state, stay (tick again later), stop, or panic.
-- Build it with the constructors below; the tick validates it again on use.
CREATE TYPE toygun.next AS (
    kind     text,       -- 'go', 'stay', 'stop' or 'panic'
    state    text,       -- target of 'go'
    attrs    jsonb,      -- merged into the object's attrs
    wait     interval,   -- 'stay': tick again after this long (NULL: toygun.poll_interval)
    message  text        -- 'panic': stored as attrs.panic_message
);

CREATE FUNCTION toygun.go(state text, attrs jsonb DEFAULT NULL) RETURNS toygun.next
    AS 'MODULE_PATHNAME', 'toygun_go' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION toygun.stay(attrs jsonb DEFAULT NULL, wait interval DEFAULT NULL) RETURNS toygun.next
    AS 'MODULE_PATHNAME', 'toygun_stay' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION toygun.stop(attrs jsonb DEFAULT NULL) RETURNS toygun.next
    AS 'MODULE_PATHNAME', 'toygun_stop' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION toygun.panic(message text) RETURNS toygun.next
    AS 'MODULE_PATHNAME', 'toygun_panic' LANGUAGE C IMMUTABLE PARALLEL SAFE;
