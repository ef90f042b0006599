# A steady load of multi-state runs, and the invariants that must hold after
# anything: crashes, restarts, load. Source after cluster.sh and tap.sh.
#
# Every committed start is recorded in table `started` by the same
# transaction; every committed tick of a handler is recorded in `ticks` by the
# tick's transaction, so `ticks` shows exactly which states ran and how often.

# load_setup DIR DB: the extension, a three-state task and the tables.
load_setup() {
	tg_psql "$1" "$2" -q <<'SQL' >/dev/null
CREATE EXTENSION IF NOT EXISTS toygun;
CREATE TABLE started (run uuid PRIMARY KEY, at timestamptz DEFAULT clock_timestamp());
CREATE TABLE ticks (run uuid, state text, at timestamptz DEFAULT clock_timestamp());
CREATE INDEX ON ticks (run);
GRANT INSERT ON ticks TO PUBLIC;
CREATE FUNCTION public.load_h(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.ticks (run, state) VALUES (t.id, t.state);
    IF (t.attrs->>'sleep')::float > 0 THEN PERFORM pg_sleep((t.attrs->>'sleep')::float); END IF;
    RETURN CASE t.state WHEN 'a' THEN toygun.go('b') WHEN 'b' THEN toygun.go('c') ELSE toygun.stop() END;
END $$;
SELECT toygun.define_resource('loaded');
SELECT toygun.define_task('loaded', 'job', '{a,b,c}', 'load_h(toygun.task)');
SQL
}

# load_clients DIR DB CLIENTS STARTS_EACH SECONDS [SLEEP]: background clients,
# each committing STARTS_EACH starts (25 per transaction), retrying while the
# server is away, for at most SECONDS. Their pids are in LOAD_PIDS.
load_clients() {
	local dir=$1 db=$2 clients=$3 each=$4 seconds=$5 sleep=${6:-0} c
	LOAD_PIDS=()
	for c in $(seq 1 "$clients"); do
		(
			local done=0 deadline=$((SECONDS + seconds))
			while [ $done -lt "$each" ] && [ $SECONDS -lt $deadline ]; do
				if tg_psql "$dir" "$db" -c "INSERT INTO started (run)
				      SELECT toygun.start_task(toygun.create_resource('loaded'), 'job', '{\"sleep\": $sleep}')
				        FROM generate_series(1, 25)" >/dev/null 2>&1; then
					done=$((done + 25))
				else
					sleep 0.2
				fi
			done
		) &
		LOAD_PIDS+=($!)
	done
}

# load_wait_done DIR DB SECONDS: wait until every committed start has stopped.
load_wait_done() {
	tg_wait "$3" "$1" "$2" "SELECT NOT EXISTS (SELECT FROM started s JOIN toygun.task t ON t.id = s.run
	                                           WHERE t.state <> '__stop__')"
}

# load_invariants DIR DB LABEL: the invariants, as TAP lines (6 of them).
load_invariants() {
	local dir=$1 db=$2 label=$3
	local q="tg_psql $dir $db -c"
	is "$($q "SELECT count(*) FROM started s LEFT JOIN toygun.task t ON t.id = s.run
	           WHERE t.id IS NULL OR t.state <> '__stop__'")" 0 "$label: every committed start reached __stop__"
	is "$($q "SELECT count(*) FROM toygun.task t WHERE NOT EXISTS (SELECT FROM started s WHERE s.run = t.id)")" 0 \
		"$label: no run exists whose start did not commit"
	is "$($q "SELECT count(*) FROM (SELECT object_id, step FROM toygun.transition
	                                GROUP BY 1, 2 HAVING count(*) > 1) x")" 0 "$label: no (object, step) appears twice"
	is "$($q "SELECT count(*) FROM (SELECT object_id FROM toygun.transition GROUP BY object_id
	                                HAVING min(step) <> 0 OR max(step) <> count(*) - 1) x")" 0 \
		"$label: steps are gapless from 0"
	is "$($q "SELECT count(*) FROM toygun.task t JOIN toygun.resource r ON r.id = t.resource_id
	           WHERE t.state NOT IN ('__stop__', '__panic__') AND t.run_at IS NULL AND r.state <> '__stop__'")" 0 \
		"$label: no run is stuck live with nothing due"
	is "$($q "SELECT count(*) FROM (SELECT s.run FROM started s LEFT JOIN ticks k ON k.run = s.run
	                                GROUP BY s.run HAVING count(k.run) <> 3 OR count(DISTINCT k.state) <> 3) x")" 0 \
		"$label: each state of each run ran exactly once"
}
