#!/usr/bin/env bash
# test/package/run.sh: toygun as users install it (issue 20), printing TAP.
#
#  - versions: toygun.control's default_version is META.json's version and its
#    provides' version, CHANGELOG.md's latest heading and debian/changelog's;
#  - make dist: toygun-<semver>.zip, every file under toygun-<semver>/, and it
#    builds and installs (make, make install DESTDIR=) as pgxn install would;
#  - bin/toygun package builds this checkout's .debs and, with --from, the
#    previous release's (0.3, from the commit where toygun.control said 0.3);
#  - a fresh Debian bookworm (debootstrap --variant=minbase) in a chroot, with
#    no compiler: 0.3's package installed with apt-get, a cluster that preloads
#    it, data made under 0.3; the current packages installed over it, the
#    server restarted, ALTER EXTENSION toygun UPDATE, the 0.3 data still there;
#    the README's worked example by hand and ticked by a worker; the toygun
#    command from toygun-cli; apt-get purge, and no toygun file left in /usr.
#
# Run as root from the checkout (it needs git: the previous version is built
# from history). TG_ROOT: the checkout (default: this file's); TG_WORK: a
# scratch folder (default TG_ROOT/.tmp/package), removed at the end unless
# TG_KEEP=1; TG_DEBIAN_MIRROR (default http://deb.debian.org/debian) and
# TG_DEBIAN_SECURITY (http://deb.debian.org/debian-security). Without root,
# debootstrap or the mirror, it prints one "1..0 # SKIP" line: skipped, not passed.
set -uo pipefail

TG_ROOT=${TG_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
TG_WORK=${TG_WORK:-$TG_ROOT/.tmp/package}
MIRROR=${TG_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${TG_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
# the previous release: the last commit whose toygun.control said 0.3
PREV_VERSION=0.3
PREV_COMMIT=4c0e946
PORT=5670
T0=$SECONDS

skip() { echo "1..0 # SKIP $*"; exit 0; }
[ "$(id -u)" -eq 0 ] || skip "not root: debootstrap and chroot need root"
command -v debootstrap >/dev/null || skip "debootstrap is not installed"
command -v git >/dev/null && git -C "$TG_ROOT" rev-parse -q --verify "$PREV_COMMIT^{commit}" >/dev/null ||
	skip "no git history in $TG_ROOT: the $PREV_VERSION package is built from commit $PREV_COMMIT"
reachable() { timeout 20 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
host=${MIRROR#*://}; host=${host%%/*}
case $MIRROR in https:*) mport=443 ;; *) mport=80 ;; esac
reachable "$host" "$mport" || skip "the Debian mirror $MIRROR is not reachable"

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else notok "$what"; fi; }
# a failed step's log is $TG_WORK/log (kept with TG_KEEP=1, the chroot too)
note() { printf '# %s\n' "$@"; }
bail() { echo "Bail out! $*"; cleanup; exit 1; }

R=$TG_WORK/root
LOG=$TG_WORK/log
mkdir -p "$TG_WORK"
: >"$LOG"

# in_root CMD...: CMD in the chroot (root), /proc mounted in a private mount
# namespace that ends with it (apt and maintainer scripts want /proc)
in_root() {
	unshare -m -- sh -c 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$R" \
		env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}
# as_pg CMD...: CMD in the chroot as its postgres user (initdb refuses root), by
# the ids in the chroot's /etc/passwd (the machine's postgres may have others)
PG_IDS=
as_pg() {
	[ -n "$PG_IDS" ] || PG_IDS=$(chroot "$R" id -u postgres):$(chroot "$R" id -g postgres)
	chroot --userspec="$PG_IDS" "$R" env -i PATH=/usr/lib/postgresql/15/bin:/usr/bin:/bin \
		HOME=/var/lib/postgresql LANG=C.UTF-8 PGHOST=/tmp PGPORT=$PORT PGUSER=postgres "$@"
}
psql_() { as_pg psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
q() { psql_ -d app -c "$1" 2>>"$LOG"; }
pg_ctl_() { as_pg pg_ctl -D /var/lib/postgresql/tg "$@" >>"$LOG" 2>&1; }

cleanup() {
	if [ -f "$R/var/lib/postgresql/tg/postmaster.pid" ]; then
		pg_ctl_ stop -m immediate -w -t 30 || true
	fi
	if [ "${TG_KEEP:-0}" != 1 ] && [ -d "$R" ]; then
		# nothing stays mounted: in_root's mounts lived in namespaces that ended
		rm -rf "$R"
	fi
}
trap cleanup EXIT

# --- versions and the PGXN distribution --------------------------------------

# the previous release is what it says it is
prev_is_last() {
	local first
	first=$(git -C "$TG_ROOT" rev-list --reverse "$PREV_COMMIT..HEAD" -- toygun.control | head -n 1)
	git -C "$TG_ROOT" show "$PREV_COMMIT:toygun.control" | grep -qx "default_version = '$PREV_VERSION'" &&
		[ -n "$first" ] && [ "$(git -C "$TG_ROOT" rev-parse "$first^")" = "$(git -C "$TG_ROOT" rev-parse "$PREV_COMMIT^{commit}")" ]
}
check "commit $PREV_COMMIT is the last whose toygun.control says $PREV_VERSION" prev_is_last

VERSION=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$TG_ROOT/toygun.control")
# PGXN wants a semantic version: 0.4 is 0.4.0 in META.json and the zip's name
SEMVER=$(sed -E 's/^([0-9]+\.[0-9]+)$/\1.0/' <<<"$VERSION")
meta() { python3 -c "import json,sys; m=json.load(open('$TG_ROOT/META.json')); print($1)" 2>>"$LOG"; }
check "META.json's version is toygun.control's $VERSION as a semantic version ($SEMVER)" [ "$(meta "m['version']")" = "$SEMVER" ]
check "META.json's provides.toygun.version is $SEMVER too" \
	[ "$(meta "m['provides']['toygun']['version']")" = "$SEMVER" ]
check "META.json follows the PGXN Meta Spec 1.0.0 (meta-spec, required keys, license postgresql)" \
	[ "$(meta "m['meta-spec']['version'], sorted(k for k in ('name','abstract','version','maintainer','license','provides') if k in m) == sorted(('name','abstract','version','maintainer','license','provides')), m['license'], m['name']")" = "1.0.0 True postgresql toygun" ]
check "CHANGELOG.md's latest heading is toygun.control's version" \
	[ "$(sed -n 's/^## \([0-9][^ ]*\).*/\1/p' "$TG_ROOT/CHANGELOG.md" | head -n 1)" = "$VERSION" ]
check "debian/changelog's version is toygun.control's" \
	[ "$(cd "$TG_ROOT" && dpkg-parsechangelog -S Version 2>>"$LOG")" = "$VERSION" ]

# make dist in a copy (it archives HEAD: committed files only)
rm -rf "$TG_WORK/dist" && mkdir -p "$TG_WORK/dist"
if make -s -C "$TG_ROOT" dist DISTDIR="$TG_WORK/dist" >>"$LOG" 2>&1 &&
	[ -f "$TG_WORK/dist/toygun-$SEMVER.zip" ]; then
	ok "make dist writes toygun-$SEMVER.zip"
	list=$(unzip -Z1 "$TG_WORK/dist/toygun-$SEMVER.zip")
	check "every file of the zip is under toygun-$SEMVER/" \
		[ -z "$(grep -v "^toygun-$SEMVER/" <<<"$list")" ]
	missing=
	for f in META.json toygun.control Makefile README.md LICENSE CHANGELOG.md src/toygun.c \
		src/install/schema.sql "$(meta "m['provides']['toygun']['file']")" \
		"$(meta "m['provides']['toygun']['docfile']")" toygun--$PREV_VERSION--$VERSION.sql debian/control; do
		grep -qx "toygun-$SEMVER/$f" <<<"$list" || missing="$missing $f"
	done
	check "the zip holds META.json, the control file, the Makefile, the sources and upgrade scripts${missing:+ (missing:$missing)}" [ -z "$missing" ]
	check "the zip holds no build products or node_modules" \
		[ -z "$(grep -E '\.(o|so|bc)$|node_modules|/toygun--'"$VERSION"'\.sql$' <<<"$list")" ]
	# what pgxn install does with it (make, make install), into a private tree
	zip_builds() {
		local d=$TG_WORK/dist
		unzip -q "$d/toygun-$SEMVER.zip" -d "$d" &&
			make -s -C "$d/toygun-$SEMVER" >>"$LOG" 2>&1 &&
			make -s -C "$d/toygun-$SEMVER" install DESTDIR="$d/stage" >>"$LOG" 2>&1 &&
			[ -f "$d/stage/usr/lib/postgresql/15/lib/toygun.so" ] &&
			[ -f "$d/stage/usr/share/postgresql/15/extension/toygun--$VERSION.sql" ] &&
			[ -f "$d/stage/usr/share/postgresql/15/extension/toygun--$PREV_VERSION--$VERSION.sql" ]
	}
	check "the unpacked zip builds and installs with PGXS (make, make install DESTDIR=...)" zip_builds
	rm -rf "$TG_WORK/dist/toygun-$SEMVER" "$TG_WORK/dist/stage"
else
	notok "make dist writes toygun-$SEMVER.zip"
fi

# --- the packages ---------------------------------------------------------------

DEBS=$TG_WORK/debs
rm -rf "$DEBS"
t=$SECONDS
if "$TG_ROOT/bin/toygun" package --out "$DEBS/new" >>"$LOG" 2>&1 &&
	"$TG_ROOT/bin/toygun" package --from "$PREV_COMMIT" --out "$DEBS/old" >>"$LOG" 2>&1; then
	ok "bin/toygun package builds $VERSION's packages and $PREV_VERSION's (from $PREV_COMMIT)"
else
	notok "bin/toygun package builds $VERSION's packages and $PREV_VERSION's (from $PREV_COMMIT)"
	tail -n 30 "$LOG" | sed 's/^/# /'
	bail "no packages"
fi
note "building both versions' packages took $((SECONDS - t)) s"
ARCH=$(dpkg --print-architecture)
EXT=postgresql-15-toygun_${VERSION}_$ARCH.deb
CLI=toygun-cli_${VERSION}_all.deb
OLD=postgresql-15-toygun_${PREV_VERSION}_$ARCH.deb
have_debs() {
	[ -f "$DEBS/new/$EXT" ] && [ -f "$DEBS/new/$CLI" ] && [ -f "$DEBS/old/$OLD" ] &&
		! ls "$DEBS/old/"toygun-cli_* >/dev/null 2>&1
}
check "the packages are $EXT, $CLI and $OLD ($PREV_VERSION had no CLI)" have_debs
deps=$(dpkg-deb -f "$DEBS/new/$EXT" Depends)
check "$EXT depends on libsodium23 and postgresql-15 ($deps)" \
	grep -qE '(^|, )libsodium23( |,|$).*(^|, )postgresql-15( |,|$)|(^|, )postgresql-15( |,|$).*(^|, )libsodium23( |,|$)' <<<"$deps"
check "$EXT recommends postgresql-15-cron" [ "$(dpkg-deb -f "$DEBS/new/$EXT" Recommends)" = postgresql-15-cron ]
check "$CLI depends on python3 and python3-psycopg2, Architecture all" \
	[ "$(dpkg-deb -f "$DEBS/new/$CLI" Depends) $(dpkg-deb -f "$DEBS/new/$CLI" Architecture)" = "python3, python3-psycopg2 all" ]
rm -rf "$TG_WORK/x" && mkdir -p "$TG_WORK/x" && dpkg-deb -x "$DEBS/old/$OLD" "$TG_WORK/x"
check "$PREV_VERSION's package installs toygun--$PREV_VERSION.sql exactly as the tree keeps it frozen" \
	cmp -s "$TG_WORK/x/usr/share/postgresql/15/extension/toygun--$PREV_VERSION.sql" "$TG_ROOT/toygun--$PREV_VERSION.sql"

# --- a fresh machine: debootstrap minbase -----------------------------------------

t=$SECONDS
rm -rf "$R"
if debootstrap --variant=minbase bookworm "$R" "$MIRROR" >>"$LOG" 2>&1; then
	ok "debootstrap --variant=minbase bookworm ($((SECONDS - t)) s)"
else
	notok "debootstrap --variant=minbase bookworm"
	tail -n 20 "$LOG" | sed 's/^/# /'
	bail "no chroot"
fi
# the machine's apt sources as a fresh bookworm has them (the packages depend on
# the PostgreSQL minor version they were built against: updates and security)
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
	"$MIRROR" "$MIRROR" "$SECURITY" >"$R/etc/apt/sources.list"
cp /etc/resolv.conf "$R/etc/resolv.conf"
# no service starts in the chroot, and postgresql-common makes no cluster
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d" && chmod 0755 "$R/usr/sbin/policy-rc.d"
mkdir -p "$R/etc/postgresql-common" "$R/tmp/debs"
echo 'create_main_cluster = false' >"$R/etc/postgresql-common/createcluster.conf"
cp "$DEBS/new/$EXT" "$DEBS/new/$CLI" "$DEBS/old/$OLD" "$R/tmp/debs/"
no_compiler() {
	! in_root sh -c 'command -v gcc || command -v cc || command -v clang || command -v make ||
		[ -e /usr/include/postgresql/15/server ] ||
		dpkg-query -W -f="\${Status}\n" gcc postgresql-server-dev-15 libsodium-dev 2>/dev/null | grep -q "ok installed"' >/dev/null 2>&1
}
check "the chroot has no compiler, make or PostgreSQL/libsodium headers" no_compiler

t=$SECONDS
in_root apt-get update -q >>"$LOG" 2>&1
# as the README says it: apt-get install ./...deb, recommends included (pg_cron)
if in_root apt-get install -y -q "/tmp/debs/$OLD" >>"$LOG" 2>&1; then
	ok "apt-get install ./$OLD in the chroot ($((SECONDS - t)) s, PostgreSQL 15 with it)"
else
	notok "apt-get install ./$OLD in the chroot"
	tail -n 20 "$LOG" | sed 's/^/# /'
	bail "cannot install"
fi

# a cluster that preloads toygun, ticking the database app
as_pg initdb -D /var/lib/postgresql/tg -U postgres -A trust --no-sync >>"$LOG" 2>&1 || bail "initdb failed"
as_pg sh -c 'umask 077 && printf "1 %s\n" "$(head -c 32 /dev/urandom | base64)" >/var/lib/postgresql/keyring'
cat >>"$R/var/lib/postgresql/tg/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '/tmp'
port = $PORT
shared_preload_libraries = 'toygun'
toygun.database_name = 'app'
toygun.keyring_file = '/var/lib/postgresql/keyring'
EOF
check "apt installed postgresql-15-cron, which the package recommends" \
	[ "$(in_root dpkg-query -W -f='${Status}' postgresql-15-cron 2>/dev/null)" = "install ok installed" ]
check "a cluster preloading toygun $PREV_VERSION starts in the chroot" pg_ctl_ start -w -t 60 -l /var/lib/postgresql/tg.log
psql_ -d postgres -c "CREATE DATABASE app" 2>>"$LOG"
q "CREATE EXTENSION toygun" >/dev/null
check "CREATE EXTENSION toygun makes $PREV_VERSION" \
	[ "$(q "SELECT extversion FROM pg_extension WHERE extname = 'toygun'")" = "$PREV_VERSION" ]

# data made under 0.3: the README's worked example, ticked by the worker
WORKED=$(cat <<'SQL'
SELECT toygun.define_resource('example');
CREATE FUNCTION example_echo(t toygun.task) RETURNS toygun.next LANGUAGE plpgsql AS $$
BEGIN
  CASE t.state
  WHEN 'one' THEN RETURN toygun.go('two', '{"something": [1,2,3]}');
  WHEN 'two' THEN RAISE NOTICE 'two %', t.attrs->'something'; RETURN toygun.stop();
  END CASE;
END $$;
SELECT toygun.define_task('example', 'echo', '{one,two}', 'example_echo(toygun.task)');
SQL
)
q "$WORKED" >/dev/null
old_r=$(q "SELECT toygun.create_resource('example')")
old_t=$(q "SELECT toygun.start_task('$old_r', 'echo')")
wait_sql() {
	local deadline=$((SECONDS + $1))
	while [ $SECONDS -lt $deadline ]; do
		[ "$(q "$2")" = t ] && return 0
		sleep 0.3
	done
	return 1
}
check "under $PREV_VERSION the worker ticks a run to __stop__" \
	wait_sql 30 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$old_t'"
old_hist=$(q "SELECT string_agg(from_state || '>' || to_state, ',' ORDER BY step) FROM toygun.history('$old_t')")

# --- the current packages over it: apt-get install, restart, ALTER EXTENSION UPDATE ---

t=$SECONDS
if in_root apt-get install -y -q "/tmp/debs/$EXT" "/tmp/debs/$CLI" >>"$LOG" 2>&1; then
	ok "apt-get install ./$EXT ./$CLI over $PREV_VERSION ($((SECONDS - t)) s)"
else
	notok "apt-get install ./$EXT ./$CLI over $PREV_VERSION"
	tail -n 20 "$LOG" | sed 's/^/# /'
fi
check "dpkg has postgresql-15-toygun $VERSION and toygun-cli $VERSION" \
	[ "$(in_root dpkg-query -W -f='${Version} ' postgresql-15-toygun toygun-cli)" = "$VERSION $VERSION " ]

check "the server restarts on the new toygun.so" pg_ctl_ restart -w -t 60 -m fast -l /var/lib/postgresql/tg.log
q "ALTER EXTENSION toygun UPDATE" >/dev/null
check "ALTER EXTENSION toygun UPDATE takes it to $VERSION" \
	[ "$(q "SELECT extversion FROM pg_extension WHERE extname = 'toygun'")" = "$VERSION" ]
survived() {
	[ -n "$old_hist" ] &&
		[ "$(q "SELECT string_agg(from_state || '>' || to_state, ',' ORDER BY step) FROM toygun.history('$old_t')")" = "$old_hist" ] &&
		[ "$(q "SELECT count(*) FROM toygun.resource WHERE id = '$old_r'")" = 1 ]
}
check "the run made under $PREV_VERSION, its resource and history survive ($old_hist)" survived

# the README's worked example, by hand in a transaction (Getting started) ...
by_hand=$(psql_ -d app 2>"$TG_WORK/notices" <<'SQL'
BEGIN;
SELECT toygun.create_resource('example') AS r \gset
SELECT toygun.start_task(:'r', 'echo') AS t \gset
SELECT state FROM toygun.tick_task(:'t');
SELECT state FROM toygun.tick_task(:'t');
SELECT string_agg(to_state, ',' ORDER BY step) FROM toygun.history(:'t');
COMMIT;
SQL
)
check "the worked example by hand: two, __stop__, history one,two,__stop__" \
	[ "$(paste -sd'|' <<<"$by_hand")" = "two|__stop__|one,two,__stop__" ]
check "the worked example's second tick says NOTICE: two [1, 2, 3]" grep -q 'NOTICE:  two \[1, 2, 3\]' "$TG_WORK/notices"
# ... and ticked by the worker of the upgraded, preloaded toygun
new_r=$(q "SELECT toygun.create_resource('example')")
new_t=$(q "SELECT toygun.start_task('$new_r', 'echo')")
check "under $VERSION a worker ticks a new run to __stop__" \
	wait_sql 30 "SELECT state = '__stop__' FROM toygun.task WHERE id = '$new_t'"
check "the worker shows in pg_stat_activity as 'toygun worker'" \
	[ "$(q "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'toygun worker'")" = t ]

# the toygun command from toygun-cli, as a user would run it
cli_t=$(as_pg env PGDATABASE=app toygun start "$new_r" echo 2>>"$LOG" | tail -n 1)
check "toygun start (toygun-cli) starts a run" [ -n "$cli_t" ]
check "the worker ticks it; toygun show prints its __stop__" \
	wait_sql 30 "SELECT state = '__stop__' FROM toygun.task WHERE id = '${cli_t:-00000000-0000-0000-0000-000000000000}'"
show=$(as_pg env PGDATABASE=app toygun --json show "${cli_t:-x}" 2>>"$LOG")
check "toygun --json show reads it" grep -q '__stop__' <<<"$show"
cli_status() { as_pg env PGDATABASE=app toygun status >"$TG_WORK/status" 2>>"$LOG"; }
check "toygun status exits 0" cli_status
# the server is not packaged: the packaged command says where it looked and how to point it
serve_says() {
	! as_pg toygun serve >/dev/null 2>"$TG_WORK/serve.err" &&
		grep -q "toygun's server is not installed (looked in /usr/lib/toygun/server" "$TG_WORK/serve.err" &&
		grep -q TOYGUN_SERVER_DIR "$TG_WORK/serve.err"
}
check "toygun serve (no server package) says it is not installed and names TOYGUN_SERVER_DIR" serve_says
check "the chroot still has no compiler" no_compiler

# --- removal ------------------------------------------------------------------------

pg_ctl_ stop -w -t 60 -m fast
t=$SECONDS
purge() { in_root apt-get purge -y -q postgresql-15-toygun toygun-cli >>"$LOG" 2>&1; }
check "apt-get purge postgresql-15-toygun toygun-cli" purge
left=$(cd "$R" && find usr etc -iname '*toygun*' 2>/dev/null | head -n 5)
check "no toygun file is left under the chroot's /usr or /etc${left:+ (left: $left)}" [ -z "$left" ]
check "dpkg knows neither package any more" \
	[ -z "$(in_root dpkg-query -W -f='${Status}\n' postgresql-15-toygun toygun-cli 2>/dev/null | grep -v not-installed)" ]

echo "1..$n"
note "the package suite took $((SECONDS - T0)) s"
[ $failed -eq 0 ]
