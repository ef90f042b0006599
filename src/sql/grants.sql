
-- Everybody may read the tables ("datasets") and call the API; the API
-- checks, per call, that the caller may act for the type's owner. Nobody but
-- the extension's owner writes the tables directly.
GRANT USAGE ON SCHEMA toygun TO PUBLIC;
GRANT SELECT ON toygun.resource_type, toygun.task_type, toygun.resource, toygun.task,
    toygun.transition, toygun.stats TO PUBLIC;
