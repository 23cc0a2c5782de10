#!/bin/sh
# run-tests.sh - build postino and run every test: unit tests (cmocka), then the end-to-end
# suite (real clients over real sockets), both in a normal build and under ASan+UBSan.
# Ends with the lines "skipped: N ..." and "summary: N passed, N failed" (skipped tests need a
# tool that is absent, e.g. IMAPTEST); exits non-zero on any failure.
#
#   ./run-tests.sh            everything
#   POSTINO_TEST_QUICK=1      skip the ASan+UBSan pass (for a fast local loop)
#   PYTEST_ARGS="-k smtp"     pass arguments to pytest
set -u
cd "$(dirname "$0")"
scripts/deps.sh --test || exit 1
results=$(mktemp -d /tmp/postino-results.XXXXXX)
trap 'rm -rf "$results"' EXIT
fail_setup=0

# build DIR [meson options]
build() {
	dir=$1
	shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >"$results/setup-$dir.log" 2>&1 ||
			{ cat "$results/setup-$dir.log"; return 1; }
	fi
	ninja -C "$dir" >"$results/build-$dir.log" 2>&1 || { cat "$results/build-$dir.log"; return 1; }
}

# suite NAME BUILDDIR: cmocka unit tests, then the end-to-end suite against that build
suite() {
	name=$1
	dir=$2
	echo "== $name: unit tests"
	meson test -C "$dir" --print-errorlogs >"$results/unit-$name.log" 2>&1
	grep -E '^ *[0-9]+/[0-9]+ ' "$results/unit-$name.log"
	ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$results/unit-$name.log")
	bad=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$results/unit-$name.log")
	to=$(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' "$results/unit-$name.log")
	sk=$(sed -n 's/^Skipped: *\([0-9]*\).*/\1/p' "$results/unit-$name.log")
	[ "${bad:-0}${to:-0}" != "00" ] && cat "$results/unit-$name.log"
	echo "${ok:-0} $(( ${bad:-0} + ${to:-0} )) ${sk:-0}" >"$results/count-unit-$name"
	echo "== $name: end-to-end tests"
	# shellcheck disable=SC2086
	POSTINO_BIN="$PWD/$dir/postino" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
		--junitxml="$results/e2e-$name.xml" ${PYTEST_ARGS:-} tests/e2e
	/usr/bin/python3 - "$results/e2e-$name.xml" >"$results/count-e2e-$name" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("0 1 0"); sys.exit()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
sk = sum(int(s.get("skipped", 0)) for s in suites)
print(t - f - sk, f, sk)
PY
}

build build || fail_setup=1
[ $fail_setup -eq 0 ] && suite normal build
if [ -z "${POSTINO_TEST_QUICK:-}" ]; then
	if build build-asan -Db_sanitize=address,undefined -Db_lundef=false \
		-Dbuildtype=debug; then
		export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1
		export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
		suite asan build-asan
	else
		fail_setup=1
	fi
fi

echo "== fuzz targets (5 s each; scripts/fuzz.sh 600 for a longer run)"
scripts/fuzz.sh 5 | tee "$results/fuzz.log"
echo "$(grep -c ': ok' "$results/fuzz.log") $(grep -c ': FAILED' "$results/fuzz.log") 0" \
	>"$results/count-fuzz"

passed=0
failed=$fail_setup
skipped=0
for f in "$results"/count-*; do
	[ -f "$f" ] || continue
	read -r p q k <"$f"
	passed=$((passed + p))
	failed=$((failed + q))
	skipped=$((skipped + ${k:-0}))
done
# skips get their own line: the last line keeps the contract's "N passed, N failed" form
echo "skipped: $skipped (tests whose tool is absent, e.g. IMAPTEST unset)"
echo "summary: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
