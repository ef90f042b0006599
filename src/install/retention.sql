
-- Retention (issue 16): one round of maintenance, as the workers do it when
-- nothing is due and at least every toygun.maintain_interval: create the
-- history's time partitions rows will need, drop those whose rows have all
-- expired (given up until the next round while another transaction holds the
-- history) with the stopped runs whose stop rows they hold, delete expired
-- rows of the default partition (with theirs), remove stopped resources past
-- their type's keep (at most toygun.prune_batch runs and resources) with what
-- only they use, and prune failures. For
-- installations without the workers (pg_cron) and for tests; in one
-- transaction, the caller's. The extension's owner (or a role with its
-- privileges, a superuser) only: it acts on every owner's types. Returns
-- what it did, as {"partitions_created": n, ...}.
CREATE FUNCTION toygun.maintain() RETURNS jsonb
    AS 'MODULE_PATHNAME', 'toygun_maintain' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION toygun.maintain() FROM PUBLIC;
