#!/bin/sh
# deps.sh - install the Debian 12 packages postino needs, only those missing.
#   scripts/deps.sh          build dependencies (the cmocka unit tests are part of every build)
#   scripts/deps.sh --test   build and test dependencies
set -eu
pkgs="meson ninja-build pkg-config gcc libc6-dev libssl-dev libsqlite3-dev libcrypt-dev
      libsodium-dev zlib1g-dev openssl libunbound-dev libidn2-dev libunistring-dev
      libicu-dev libpsl-dev publicsuffix libcmocka-dev"
if [ "${1:-}" = "--test" ]; then
	pkgs="$pkgs python3 python3-pytest swaks libnet-ssleay-perl libio-socket-ssl-perl sqlite3 clang libclang-rt-14-dev
	      fetchmail getmail6 isync mutt tmux curl bind9-utils chromium zbar-tools librsvg2-bin unbound python3-aiosmtpd
	      python3-dkim opendkim-tools python3-spf python3-authres rspamd python3-milter
	      python3-prometheus-client systemd groff-base man-db"
fi
missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "postino: missing packages:$missing" >&2
	echo "postino: install them as root: apt-get install$missing" >&2
	exit 1
fi
echo "postino: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || true
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
