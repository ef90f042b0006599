# Three-node Citus clusters on one machine for toygun's Citus tests.
# Source after test/lib/cluster.sh. Run as the postgres OS user.
#
# PGBIN names the PostgreSQL to use (a private copy with Citus and toygun
# installed, e.g. /tmp/pgHZ/usr/lib/postgresql/15/bin, made by bin/build-citus
# and make install DESTDIR=/tmp/pgHZ). Nodes listen on 127.0.0.1 (Citus nodes
# connect to each other by host and port) and on a socket in their folder.
# CITUS_PORT0 (default 5680) is the coordinator's port, the workers' follow.

CITUS_PORT0=${CITUS_PORT0:-5680}

# citus_available: Citus is installed in PGBIN's PostgreSQL.
citus_available() {
	local lib share
	lib=$("$PGBIN/pg_config" --pkglibdir 2>/dev/null) || return 1
	share=$("$PGBIN/pg_config" --sharedir 2>/dev/null) || return 1
	[ -f "$lib/citus.so" ] && [ -f "$share/extension/citus.control" ] &&
		[ -f "$lib/toygun.so" ] && [ -f "$lib/pg_cron.so" ]
}

# citus_node_init DIR PORT [setting = value]...
citus_node_init() {
	local dir=$1 port=$2; shift 2
	TG_PORT=$port tg_init "$dir" \
		"listen_addresses = '127.0.0.1'" \
		"shared_preload_libraries = 'citus,pg_cron,toygun'" \
		"cron.database_name = 'postgres'" \
		"max_connections = 100" \
		"max_prepared_transactions = 100" \
		"wal_level = logical" \
		"citus.shard_count = 8" \
		"toygun.workers = 1" \
		"$@"
}

# citus_psql N [psql args]...: psql to node N (0 the coordinator).
citus_psql() {
	local n=$1; shift
	psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p $((CITUS_PORT0 + n)) -U postgres -d postgres -At "$@"
}

# citus_test_start SUBDIR: where Citus is not installed, the one TAP line
# that says so, and exit; else WORK=$TG_WORK/SUBDIR, empty, and the three
# nodes stopped when the test exits.
citus_test_start() {
	if ! citus_available; then
		echo "1..0 # SKIP Citus is not installed in $PGBIN's PostgreSQL (bin/build-citus SRC PG_CONFIG DESTDIR installs it; doc/citus.md)"
		exit 0
	fi
	WORK=${TG_WORK:-/tmp/tgcitus-test}/$1
	rm -rf "$WORK"
	mkdir -p "$WORK"
	trap citus_stop_all EXIT
}
citus_stop_all() {
	local n
	for n in 0 1 2; do TG_PORT=$((CITUS_PORT0 + n)) tg_stop "$WORK/n$n" immediate; done
}
c() { citus_psql "$@"; }
