# Temporary PostgreSQL clusters for toygun's tests, demo and benchmarks.
# Source this file. Run as the postgres OS user, except where it says root.
#
# A cluster lives in one folder: data in DIR/data, its Unix socket in DIR,
# no TCP listener, so clusters in different folders never collide.

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
TG_PORT=${TG_PORT:-5432}

# tg_keyring FILE [NUMBER]: a new keyring file holding one fresh random key
# (numbered 1 unless NUMBER), readable only by its owner.
tg_keyring() {
	local file=$1 number=${2:-1}
	(umask 077 && printf '# toygun keyring: <key number> <base64 32-byte key>\n%s %s\n' \
		"$number" "$(head -c 32 /dev/urandom | base64)" >"$file")
}

# tg_init DIR [setting = value]...: a new cluster that preloads toygun, with
# a keyring of its own in DIR/keyring (a later setting may name another).
tg_init() {
	local dir=$1; shift
	rm -rf "$dir/data"
	mkdir -p "$dir"
	tg_keyring "$dir/keyring"
	"$PGBIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; return 1; }
	{
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "port = $TG_PORT"
		echo "shared_preload_libraries = 'pg_cron,toygun'"
		echo "max_worker_processes = 32"
		echo "log_min_messages = warning"
		echo "log_line_prefix = '%m [%p] %b '"
		echo "toygun.keyring_file = '$dir/keyring'"
		for setting in "$@"; do echo "$setting"; done
	} >>"$dir/data/postgresql.conf"
}

# tg_start DIR / tg_stop DIR [mode]. The server does not inherit descriptor 9,
# which holds bin/toygun's install lock, or it would hold the lock for its life.
tg_start() {
	"$PGBIN/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 start >/dev/null 9>&- ||
		{ tail -n 30 "$1/server.log" >&2; return 1; }
}
tg_stop() {
	"$PGBIN/pg_ctl" -D "$1/data" -m "${2:-fast}" -w -t 60 stop >/dev/null 2>&1 || true
}

# tg_psql DIR DB [psql args]...: quiet, unaligned, stop on error.
tg_psql() {
	local dir=$1 db=$2; shift 2
	psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$TG_PORT" -U postgres -d "$db" -At "$@"
}

# tg_wait SECONDS DIR DB SQL: poll until SQL returns 't', at most SECONDS.
tg_wait() {
	local seconds=$1 dir=$2 db=$3 sql=$4
	local deadline=$((SECONDS + seconds))
	while [ $SECONDS -lt $deadline ]; do
		[ "$(tg_psql "$dir" "$db" -c "$sql" 2>/dev/null)" = t ] && return 0
		sleep 0.2
	done
	return 1
}
