#!/bin/sh
# quickstart.sh - build postino and run it on a demo data dir, in the foreground.
#
# Installs missing Debian packages, builds into ./build, creates ./var (domain example.test,
# account demo@example.test with a printed password, a self-signed certificate for
# mail.example.test) on first run, then runs "postino serve" with every listener on.
# As root the standard ports are used and the workers run as the system user "postino";
# as another user every port is moved up by 10000 (25 -> 10025, 587 -> 10587, ...).
set -eu
cd "$(dirname "$0")"
scripts/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
data=${POSTINO_DATA:-./var}
# as root, "postino quickstart" itself creates the system user postino and runs the workers as it
if [ "$(id -u)" -eq 0 ]; then
	offset=${POSTINO_PORT_OFFSET:-0}
else
	offset=${POSTINO_PORT_OFFSET:-10000}
fi
if [ ! -f "$data/postino.conf" ]; then
	./build/postino quickstart mail.example.test --data "$data" --port-offset "$offset" \
		--domain example.test --account demo@example.test
	echo
fi
echo "postino: serving from $data (Ctrl-C stops)"
exec ./build/postino serve --data "$data"
