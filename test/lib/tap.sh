# TAP output for scenario scripts (test/scenario/*.sh), run by prove.
# Source after cluster.sh. Every check prints "ok N - what" or "not ok N - what".

TAP_N=0
TAP_FAILED=0

plan() { echo "1..$1"; }

# ok CONDITION-STATUS DESCRIPTION: pass when the previous command succeeded,
# e.g.  [ "$x" = 3 ]; ok $? "three runs"
ok() {
	local status=$1; shift
	TAP_N=$((TAP_N + 1))
	if [ "$status" -eq 0 ]; then
		echo "ok $TAP_N - $*"
	else
		echo "not ok $TAP_N - $*"
		TAP_FAILED=$((TAP_FAILED + 1))
	fi
}

# is HAVE WANT DESCRIPTION
is() {
	local have=$1 want=$2; shift 2
	if [ "$have" = "$want" ]; then
		ok 0 "$*"
	else
		ok 1 "$*"
		echo "#   have: $have"
		echo "#   want: $want"
		return 1
	fi
}

# note TEXT: a figure or remark, shown by prove -v
note() { echo "# $*"; }

# bail TEXT: stop the script, failing it
bail() { echo "Bail out! $*"; exit 1; }
