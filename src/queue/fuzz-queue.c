/* fuzz-queue.c - libFuzzer target for what the queue reads from others: envelope files
 * (queue_env_parse), remote SMTP reply lines (smtpc_reply_line) and the DATA writer.
 *
 * Build: see scripts/fuzz.sh. The first input byte picks the parser. Besides memory errors it
 * checks the contracts: a parsed envelope has 1..QUEUE_MAX_RCPTS recipients with NUL-terminated
 * fields; reply text stays NUL-terminated within its buffer; the DATA writer's output has no
 * bare CR or LF, no line starting with a single '.', and ends in CRLF.CRLF.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "queue.h"
#include "smtpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_env(const char *p, size_t n)
{
	struct qenv e;
	char err[256];
	if (queue_env_parse(p, n, &e, err, sizeof(err)) < 0)
		return;
	if (e.nrcpts == 0 || e.nrcpts > QUEUE_MAX_RCPTS)
		abort();
	for (unsigned i = 0; i < e.nrcpts; i++)
		if (strlen(e.rcpts[i].addr) >= sizeof(e.rcpts[i].addr) ||
		    strlen(e.rcpts[i].err) >= sizeof(e.rcpts[i].err))
			abort();
	queue_env_free(&e);
}

static void fuzz_reply(const char *p, size_t n)
{
	struct smtpc_reply r;
	smtpc_reply_init(&r);
	size_t i = 0;
	while (i < n) {
		const char *lf = memchr(p + i, '\n', n - i);
		size_t len = lf ? (size_t)(lf - (p + i)) : n - i;
		int res = smtpc_reply_line(&r, p + i, len);
		if (r.tlen >= sizeof(r.text) || r.text[r.tlen] != '\0' || strlen(r.text) != r.tlen)
			abort();
		if (res != 0)
			break;
		i += len + 1;
	}
}

static void fuzz_wire(const char *p, size_t n)
{
	struct smtpc_wire w;
	struct buf out;
	buf_init(&out, 4 * n + 64);
	smtpc_wire_init(&w, p[0] & 1);
	for (size_t i = 0; i < n; i += 7)
		if (smtpc_wire_feed(&w, p + i, n - i < 7 ? n - i : 7, &out) < 0)
			abort();
	if (smtpc_wire_end(&w, &out) < 0)
		abort();
	const char *o = out.data;
	size_t len = out.len;
	if (len < 3 || memcmp(o + len - 3, ".\r\n", 3) != 0)
		abort();
	for (size_t i = 0; i < len; i++) {
		if (o[i] == '\r' && (i + 1 >= len || o[i + 1] != '\n'))
			abort();
		if (o[i] == '\n' && (i == 0 || o[i - 1] != '\r'))
			abort();
		/* a line starting with '.' must be stuffed, except the final ".\r\n" */
		if ((i == 0 || o[i - 1] == '\n') && o[i] == '.' && i + 3 != len && o[i + 1] != '.')
			abort();
	}
	buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char *p = malloc(size - 1 ? size - 1 : 1);
	if (p == NULL)
		return 0;
	memcpy(p, data + 1, size - 1);
	switch (data[0] % 3) {
	case 0: fuzz_env(p, size - 1); break;
	case 1: fuzz_reply(p, size - 1); break;
	default: fuzz_wire(p, size - 1); break;
	}
	free(p);
	return 0;
}
