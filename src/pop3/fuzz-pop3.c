/* fuzz-pop3.c - libFuzzer target for POP3 command input: the line reader with POP3's limits,
 * pop3-cmd.c (command splitting, numbers, TOP's cut) and wire.c (what RETR/TOP send and the size
 * LIST reports).
 *
 * Build: see scripts/fuzz.sh (run fuzz-pop3 ...).
 * Input: byte 0 picks the line limit and the chunking, the rest is the client stream, which is
 * also used as a message file. Besides memory errors it checks the contracts: a parsed command
 * has a non-empty keyword and arguments without spaces, each inside the line; the PASS argument
 * is the rest of the line; a number parses only from digits and within its maximum; TOP's cut
 * taken in chunks equals the cut taken whole and ends after the wanted body lines; and the wire
 * form, transformed in chunks, has only CRLF line ends, no line starting with a single '.', and
 * as many octets less its stuffing as wire_size_fd counts for the file.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"
#include "linereader.h"
#include "pop3-cmd.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t fuzz_line_max[] = { 8, 253, 512, 4096 };

/* Check one complete line. */
static void fuzz_line(const char *l, size_t len)
{
	char *line = malloc(len + 1);
	if (line == NULL)
		return;
	memcpy(line, l, len);
	line[len] = '\0';
	const char *pass = pop3_cmd_pass_arg(line);
	if (pass != NULL && (pass != line + 5 || strncasecmp(line, "PASS ", 5) != 0))
		abort();
	size_t slen = strlen(line);   /* a NUL ends the command, as the server refuses those */
	struct pop3_cmd c;
	enum pop3_cmd_result r = pop3_cmd_parse(line, &c);
	if (r == POP3_CMD_EMPTY) {
		for (size_t i = 0; i < slen; i++)
			if (line[i] != ' ' && line[i] != '\0')   /* only spaces */
				abort();
		free(line);
		return;
	}
	const char *parts[] = { c.verb, c.arg[0], c.arg[1] };
	int missing = 0;
	for (size_t k = 0; k < 3; k++) {
		const char *p = parts[k];
		if (p == NULL) {
			missing = 1;
			continue;
		}
		if (missing || p < line || p >= line + slen || *p == '\0' || strchr(p, ' ') != NULL)
			abort();
		uint64_t n;
		if (pop3_cmd_number(p, UINT32_MAX, &n) == 0) {
			if (n > UINT32_MAX)
				abort();
			for (const char *q = p; *q; q++)
				if (*q < '0' || *q > '9')
					abort();
		}
	}
	if (r == POP3_CMD_TOO_MANY && c.arg[1] == NULL)
		abort();
	free(line);
}

/* TOP's cut of the message, whole and in chunks of `step`, must agree. */
static void fuzz_top(const char *p, size_t n, uint64_t lines, size_t step)
{
	struct pop3_top whole, part;
	pop3_top_init(&whole, lines);
	size_t cut = pop3_top_take(&whole, p, n);
	pop3_top_init(&part, lines);
	size_t got = 0;
	for (size_t o = 0; o < n && !part.done; o += step) {
		size_t k = n - o < step ? n - o : step;
		size_t t = pop3_top_take(&part, p + o, k);
		if (t > k || (t < k && !part.done))
			abort();
		got += t;
	}
	if (got != cut || part.done != whole.done)
		abort();
	if (whole.done && (cut == 0 || p[cut - 1] != '\n'))
		abort();
	if (whole.done && whole.in_body && lines > 0 && whole.seen != lines)
		abort();
}

/* The wire form of the message, in chunks, against wire_size_fd of the same bytes. */
static void fuzz_wire(const char *p, size_t n, size_t step)
{
	struct wire_state w;
	struct buf out;
	buf_init(&out, n * 2 + 16);
	wire_init(&w);
	for (size_t o = 0; o < n; o += step) {
		size_t k = n - o < step ? n - o : step;
		if (wire_transform(&w, p + o, k, &out) < 0)
			abort();
	}
	if (wire_finish(&w, &out) < 0)
		abort();
	size_t dots = 0;
	for (size_t i = 0; i < out.len; i++) {
		int start = i == 0 || out.data[i - 1] == '\n';
		if (out.data[i] == '\n' && (i == 0 || out.data[i - 1] != '\r'))
			abort();   /* a bare LF left */
		if (start && out.data[i] == '.') {
			if (i + 1 >= out.len || out.data[i + 1] != '.')
				abort();   /* a line starting with one '.' could end the response */
			dots++;
		}
	}
	if (out.len > 0 && (out.len < 2 || memcmp(out.data + out.len - 2, "\r\n", 2) != 0))
		abort();   /* the response's terminating ".\r\n" must start a line */
	FILE *f = tmpfile();
	if (f != NULL) {
		if (fwrite(p, 1, n, f) == n && fflush(f) == 0) {
			int64_t size = wire_size_fd(fileno(f));
			if (size != (int64_t)(out.len - dots))
				abort();
		}
		fclose(f);
	}
	buf_free(&out);
}

/* One input: see the top of the file. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t max = fuzz_line_max[data[0] & 3];
	size_t step = (size_t)(data[0] >> 2) % 7 + 1;
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	struct linereader lr;
	linereader_init(&lr, max);
	/* feed in chunks, as the socket would, keeping the unconsumed rest like conn's buffer */
	char *in = malloc(n + 1);
	if (in == NULL)
		return 0;
	size_t have = 0, fed = 0;
	while (fed < n || have > 0) {
		size_t k = n - fed < step * 3 ? n - fed : step * 3;
		memcpy(in + have, p + fed, k);
		have += k;
		fed += k;
		for (;;) {
			const char *l;
			size_t len, consumed;
			enum rl r = linereader_next(&lr, in, have, &l, &len, &consumed);
			if (consumed > have)
				abort();
			if (r == RL_LINE) {
				if (len > max || memchr(l, '\n', len) != NULL)
					abort();
				fuzz_line(l, len);
			}
			memmove(in, in + consumed, have - consumed);
			have -= consumed;
			if (r == RL_MORE && consumed == 0)
				break;
		}
		if (fed == n)
			break;
	}
	free(in);
	fuzz_top(p, n, data[0] % 5, step);
	fuzz_wire(p, n, step);
	return 0;
}
