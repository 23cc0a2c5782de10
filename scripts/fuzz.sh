#!/bin/sh
# fuzz.sh - build every libFuzzer target with clang (ASan+UBSan) and run each for a while.
#   scripts/fuzz.sh            5 seconds each (what run-tests.sh does)
#   scripts/fuzz.sh 600        ten minutes each, for a real fuzzing session
# Prints one "fuzz NAME: ok|FAILED" line per target and exits non-zero if any target failed.
# Crash inputs are kept in build-fuzz/NAME-crashes/.
set -u
cd "$(dirname "$0")/.."
secs=${1:-5}
out=build-fuzz
mkdir -p "$out"
CC="clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE"
fail=0
# target sources...
run() {
	name=$1
	shift
	if ! $CC -Isrc/lib -Isrc/lib-mail -Isrc/lib-imap "$@" -o "$out/$name" 2>"$out/$name.build.log"; then
		echo "fuzz $name: FAILED (build)"
		cat "$out/$name.build.log"
		fail=1
		return
	fi
	mkdir -p "$out/$name-corpus" "$out/$name-crashes"
	dict=$(ls src/*/"$name".dict 2>/dev/null | head -n 1)
	if "$out/$name" ${dict:+-dict="$dict"} -print_final_stats=1 -max_total_time="$secs" -rss_limit_mb=2048 -artifact_prefix="$out/$name-crashes/" \
		"$out/$name-corpus" >"$out/$name.log" 2>&1; then
		echo "fuzz $name: ok ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$out/$name.log" |
			awk '{print $2}') runs)"
	else
		echo "fuzz $name: FAILED"
		tail -40 "$out/$name.log"
		fail=1
	fi
}
run fuzz-addr src/lib/buf.c src/lib/utf8.c src/lib-mail/addr.c src/lib-mail/idn.c src/lib-mail/fuzz-addr.c -lidn2
run fuzz-imap-parser src/lib/buf.c src/lib/utf8.c src/lib-imap/imap-parser.c src/lib-imap/imap-quote.c \
	src/lib-imap/fuzz-imap-parser.c
run fuzz-imap-utf7 src/lib/buf.c src/lib/utf8.c src/lib/base64.c src/lib-imap/imap-utf7.c src/lib-imap/imap-seqset.c \
	src/lib-imap/fuzz-imap-utf7.c
run fuzz-imap-url src/lib-imap/imap-url.c src/lib-imap/imap-mboxname.c src/lib-imap/fuzz-imap-url.c
if [ -f src/lib-mail/fuzz-mime.c ]; then
	run fuzz-mime src/lib/buf.c src/lib/utf8.c src/lib/base64.c src/lib-mail/header.c src/lib-mail/mime-*.c src/lib-mail/fuzz-mime.c
fi
run fuzz-header src/lib/buf.c src/lib/utf8.c src/lib/base64.c src/lib-mail/header.c \
	src/lib-mail/addr.c src/lib-mail/idn.c src/lib-mail/originator.c src/lib-mail/mime-*.c \
	src/lib-mail/fuzz-header.c -lidn2
run fuzz-phish src/lib/buf.c src/lib/utf8.c src/lib/base64.c src/lib-mail/header.c \
	src/lib-mail/addr.c src/lib-mail/idn.c src/lib-mail/casefold.c src/lib-mail/mime-*.c \
	src/lib-mail/phish.c src/lib-mail/fuzz-phish.c -lidn2 -lunistring -licui18n -licuuc -lpsl
run fuzz-sasl src/lib/buf.c src/lib/base64.c src/lib-mail/sasl.c src/lib-mail/fuzz-sasl.c
run fuzz-sts -Isrc/queue src/queue/sts-policy.c src/queue/fuzz-sts.c
run fuzz-pop3 -Isrc/pop3 src/lib/buf.c src/lib/num.c src/lib/linereader.c src/lib-mail/wire.c \
	src/pop3/pop3-cmd.c src/pop3/fuzz-pop3.c
# the SMTP session on a real event loop, fed through a socketpair: the whole server but the CLI
run fuzz-smtp -std=gnu11 $(for d in src/*/; do printf -- '-I%s ' "${d%/}"; done) \
	$(find src -name '*.c' ! -name 'test-*' ! -name 'fuzz-*' ! -path 'src/cli/*' | sort) \
	src/smtp/fuzz-smtp.c -lssl -lcrypto -lsqlite3 -lcrypt -lsodium -lz -lunbound -lidn2 -lunistring -licui18n -licuuc -lpsl -lpthread
run fuzz-http-parser -Isrc/http src/http/http-parser.c src/http/fuzz-http-parser.c
run fuzz-dkim -Isrc/lib-tls src/lib/buf.c src/lib/utf8.c src/lib/base64.c \
	src/lib-mail/header.c src/lib-mail/addr.c src/lib-mail/idn.c src/lib-mail/dkim.c \
	src/lib-tls/tls-crypto.c src/lib/fsutil.c src/lib-mail/fuzz-dkim.c -lidn2 -lssl -lcrypto
# the parsers of the inbound checks: DKIM-Signature and key records, SPF (with a fake DNS), DMARC
run fuzz-authrec -Isrc/lib-tls src/lib/buf.c src/lib/utf8.c src/lib/base64.c \
	src/lib-mail/header.c src/lib-mail/addr.c src/lib-mail/idn.c src/lib-mail/dkim.c \
	src/lib-mail/dkim-verify.c src/lib-mail/spf.c src/lib-mail/dmarc.c src/lib-tls/tls-crypto.c src/lib/fsutil.c \
	src/lib-mail/fuzz-authrec.c -lidn2 -lssl -lcrypto -lpsl -lpthread
run fuzz-queue -Isrc/queue -Isrc/lib-tls -Isrc/lib-store src/lib/buf.c src/lib/num.c src/lib/ev.c \
	src/lib/fsutil.c src/lib-tls/tls.c src/lib/base64.c src/lib-store/queue-spool.c src/queue/smtpc.c src/queue/fuzz-queue.c \
	-lz -lssl -lcrypto
exit $fail
