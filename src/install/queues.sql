
-- Queues (issue 17, flow control). pause_queue stops the workers of a queue
-- from claiming its objects from the commit on (ticks by hand go on, as
-- with toygun.paused); resume_queue lets them claim again and wakes them.
-- Both are idempotent, and only for the extension's owner: a queue spans
-- the types of every owner.
CREATE FUNCTION toygun.pause_queue(name text) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_pause_queue' LANGUAGE C VOLATILE;
CREATE FUNCTION toygun.resume_queue(name text) RETURNS void
    AS 'MODULE_PATHNAME', 'toygun_resume_queue' LANGUAGE C VOLATILE;

-- Each queue of toygun.queue, and each toygun.queues names: its id (NULL
-- until a type names it), the workers the setting gives it, the running
-- workers serving it and how many of them are busy ticking, and whether it
-- is paused.
CREATE FUNCTION toygun.queue_status()
    RETURNS TABLE (queue text, id smallint, workers integer, running integer, busy integer,
                   paused boolean)
    AS 'MODULE_PATHNAME', 'toygun_queue_status' LANGUAGE C VOLATILE;
