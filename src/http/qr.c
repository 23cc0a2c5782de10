/* qr.c - QR Code encoding, byte mode, error correction level M. */
#include "qr.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Level M, per version 1..40 (ISO/IEC 18004 table 9): error correction codewords per block and
 * number of blocks. */
static const unsigned char ecc_per_block[41] = {
	0, 10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28, 28, 26, 26, 26,
	26, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28,
};
static const unsigned char num_blocks[41] = {
	0, 1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16,
	17, 17, 18, 20, 21, 23, 25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49,
};

/* Modules available for data and error correction (everything but function patterns). */
static int raw_modules(int v)
{
	int n = (16 * v + 128) * v + 64;
	if (v >= 2) {
		int na = v / 7 + 2;
		n -= (25 * na - 10) * na - 55;
		if (v >= 7)
			n -= 36;
	}
	return n;
}

static int data_codewords(int v)
{
	return raw_modules(v) / 8 - ecc_per_block[v] * num_blocks[v];
}

int qr_version_for(size_t len)
{
	for (int v = 1; v <= 40; v++) {
		size_t bits = 4 + (v < 10 ? 8 : 16) + 8 * len;
		if (len < (v < 10 ? 256u : 65536u) && bits <= (size_t)data_codewords(v) * 8)
			return v;
	}
	return -1;
}

/* GF(256) multiplication modulo x^8 + x^4 + x^3 + x^2 + 1. */
static unsigned char gf_mul(unsigned char a, unsigned char b)
{
	unsigned r = 0;
	for (int i = 7; i >= 0; i--) {
		r = (r << 1) ^ ((r >> 7) * 0x11d);
		r ^= ((b >> i) & 1u) * a;
	}
	return (unsigned char)r;
}

void qr_rs_ecc(const unsigned char *data, size_t n, unsigned ecc_len, unsigned char *out)
{
	/* generator (x - a^0)(x - a^1)...(x - a^(ecc_len-1)), leading coefficient dropped */
	unsigned char gen[32] = { 0 }, root = 1;
	gen[ecc_len - 1] = 1;
	for (unsigned i = 0; i < ecc_len; i++) {
		for (unsigned j = 0; j < ecc_len; j++) {
			gen[j] = gf_mul(gen[j], root);
			if (j + 1 < ecc_len)
				gen[j] ^= gen[j + 1];
		}
		root = gf_mul(root, 2);
	}
	memset(out, 0, ecc_len);
	for (size_t i = 0; i < n; i++) {
		unsigned char f = data[i] ^ out[0];
		memmove(out, out + 1, ecc_len - 1);
		out[ecc_len - 1] = 0;
		for (unsigned j = 0; j < ecc_len; j++)
			out[j] ^= gf_mul(gen[j], f);
	}
}

unsigned qr_format_bits(int mask)
{
	unsigned data = (0u << 3) | (unsigned)mask;   /* level M is 00 */
	unsigned rem = data;
	for (int i = 0; i < 10; i++)
		rem = (rem << 1) ^ ((rem >> 9) * 0x537);
	return ((data << 10) | (rem & 0x3ff)) ^ 0x5412;
}

unsigned qr_version_bits(int version)
{
	unsigned rem = (unsigned)version;
	for (int i = 0; i < 12; i++)
		rem = (rem << 1) ^ ((rem >> 11) * 0x1f25);
	return ((unsigned)version << 12) | (rem & 0xfff);
}

static void set_func(struct qr *q, int x, int y, int dark)
{
	q->dark[y][x] = (unsigned char)(dark != 0);
	q->func[y][x] = 1;
}

static void draw_finder(struct qr *q, int cx, int cy)
{
	for (int dy = -4; dy <= 4; dy++) {
		for (int dx = -4; dx <= 4; dx++) {
			int x = cx + dx, y = cy + dy;
			int d = abs(dx) > abs(dy) ? abs(dx) : abs(dy);
			if (x >= 0 && x < q->size && y >= 0 && y < q->size)
				set_func(q, x, y, d != 2 && d != 4);
		}
	}
}

static void draw_format(struct qr *q, int mask)
{
	unsigned bits = qr_format_bits(mask);
	int n = q->size;
#define BIT(i) ((bits >> (i)) & 1u)
	for (int i = 0; i <= 5; i++)
		set_func(q, 8, i, BIT(i));
	set_func(q, 8, 7, BIT(6));
	set_func(q, 8, 8, BIT(7));
	set_func(q, 7, 8, BIT(8));
	for (int i = 9; i < 15; i++)
		set_func(q, 14 - i, 8, BIT(i));
	for (int i = 0; i < 8; i++)
		set_func(q, n - 1 - i, 8, BIT(i));
	for (int i = 8; i < 15; i++)
		set_func(q, 8, n - 15 + i, BIT(i));
#undef BIT
	set_func(q, 8, n - 8, 1);   /* the dark module */
}

static void draw_function_patterns(struct qr *q)
{
	int n = q->size, v = q->version;
	for (int i = 0; i < n; i++) {
		set_func(q, 6, i, i % 2 == 0);
		set_func(q, i, 6, i % 2 == 0);
	}
	draw_finder(q, 3, 3);
	draw_finder(q, n - 4, 3);
	draw_finder(q, 3, n - 4);
	if (v >= 2) {
		int na = v / 7 + 2, pos[7];
		int step = v == 32 ? 26 : (v * 4 + na * 2 + 1) / (na * 2 - 2) * 2;
		pos[0] = 6;
		for (int i = na - 1, p = n - 7; i >= 1; i--, p -= step)
			pos[i] = p;
		for (int i = 0; i < na; i++) {
			for (int j = 0; j < na; j++) {
				if ((i == 0 && j == 0) || (i == 0 && j == na - 1) || (i == na - 1 && j == 0))
					continue;   /* the finder corners */
				for (int dy = -2; dy <= 2; dy++)
					for (int dx = -2; dx <= 2; dx++) {
						int d = abs(dx) > abs(dy) ? abs(dx) : abs(dy);
						set_func(q, pos[i] + dx, pos[j] + dy, d != 1);
					}
			}
		}
	}
	draw_format(q, 0);   /* reserves the areas; redrawn with the chosen mask */
	if (v >= 7) {
		unsigned bits = qr_version_bits(v);
		for (int i = 0; i < 18; i++) {
			int a = n - 11 + i % 3, b = i / 3;
			set_func(q, a, b, (bits >> i) & 1u);
			set_func(q, b, a, (bits >> i) & 1u);
		}
	}
}

static int mask_bit(int mask, int x, int y)
{
	switch (mask) {
	case 0: return (x + y) % 2 == 0;
	case 1: return y % 2 == 0;
	case 2: return x % 3 == 0;
	case 3: return (x + y) % 3 == 0;
	case 4: return (x / 3 + y / 2) % 2 == 0;
	case 5: return x * y % 2 + x * y % 3 == 0;
	case 6: return (x * y % 2 + x * y % 3) % 2 == 0;
	default: return ((x + y) % 2 + x * y % 3) % 2 == 0;
	}
}

static void apply_mask(struct qr *q, int mask)
{
	for (int y = 0; y < q->size; y++)
		for (int x = 0; x < q->size; x++)
			if (!q->func[y][x] && mask_bit(mask, x, y))
				q->dark[y][x] ^= 1;
}

/* The penalty score of ISO/IEC 18004 7.8.3 (rule 3 counted within the symbol). */
static long penalty(const struct qr *q)
{
	int n = q->size;
	long score = 0, dark = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (int a = 0; a < n; a++) {
			int run = 1;
			unsigned window = 0;
			for (int b = 0; b < n; b++) {
				int c = pass ? q->dark[b][a] : q->dark[a][b];
				if (b > 0 && c == (pass ? q->dark[b - 1][a] : q->dark[a][b - 1])) {
					if (++run == 5)
						score += 3;
					else if (run > 5)
						score++;
				} else {
					run = 1;
				}
				window = ((window << 1) | (unsigned)c) & 0x7ff;
				if (b >= 10 && (window == 0x5d0 || window == 0x05d))
					score += 40;   /* 1:1:3:1:1 with four light modules on one side */
			}
		}
	}
	for (int y = 0; y < n; y++) {
		for (int x = 0; x < n; x++) {
			dark += q->dark[y][x];
			if (x + 1 < n && y + 1 < n && q->dark[y][x] == q->dark[y][x + 1] &&
			    q->dark[y][x] == q->dark[y + 1][x] && q->dark[y][x] == q->dark[y + 1][x + 1])
				score += 3;
		}
	}
	long total = (long)n * n;
	long k = (labs(dark * 20 - total * 10) + total - 1) / total - 1;
	return score + k * 10;
}

int qr_encode(const void *data, size_t len, struct qr *q)
{
	int v = qr_version_for(len);
	if (v < 0)
		return -1;
	memset(q, 0, sizeof(*q));
	q->version = v;
	q->size = 17 + 4 * v;
	int dcw = data_codewords(v);
	unsigned char *cw = calloc((size_t)raw_modules(v) / 8 + 1, 1);
	unsigned char *dbuf = calloc((size_t)dcw, 1);
	if (cw == NULL || dbuf == NULL) {
		free(cw);
		free(dbuf);
		return -1;
	}
	/* the bit stream: mode 0100, count, bytes, terminator, padding */
	size_t bit = 0;
#define PUT(val, nbits) do { for (int i_ = (nbits) - 1; i_ >= 0; i_--, bit++) \
	if (((val) >> i_) & 1u) dbuf[bit >> 3] |= (unsigned char)(0x80 >> (bit & 7)); } while (0)
	PUT(4u, 4);
	PUT((unsigned)len, v < 10 ? 8 : 16);
	for (size_t i = 0; i < len; i++)
		PUT(((const unsigned char *)data)[i], 8);
	size_t cap = (size_t)dcw * 8;
	for (int i = 0; i < 4 && bit < cap; i++)
		bit++;
	bit = (bit + 7) & ~(size_t)7;
	for (unsigned char pad = 0xec; bit < cap; pad ^= 0xec ^ 0x11)
		PUT(pad, 8);
#undef PUT
	/* split into blocks, add error correction, interleave */
	int nb = num_blocks[v], ecl = ecc_per_block[v];
	int raw = raw_modules(v) / 8;
	int nshort = nb - raw % nb, short_len = raw / nb - ecl;   /* data codewords per short block */
	unsigned char ecc[64][32];
	int off = 0;
	for (int b = 0; b < nb; b++) {
		int dl = short_len + (b >= nshort);
		qr_rs_ecc(dbuf + off, (size_t)dl, (unsigned)ecl, ecc[b]);
		off += dl;
	}
	int k = 0;
	for (int i = 0; i <= short_len; i++) {
		for (int b = 0, o = 0; b < nb; o += short_len + (b >= nshort), b++) {
			if (i < short_len || b >= nshort)
				cw[k++] = dbuf[o + i];
		}
	}
	for (int i = 0; i < ecl; i++)
		for (int b = 0; b < nb; b++)
			cw[k++] = ecc[b][i];
	free(dbuf);
	/* place the codewords in the two-module-wide zigzag */
	draw_function_patterns(q);
	int n = q->size;
	size_t i = 0, nbits = (size_t)k * 8;
	for (int right = n - 1; right >= 1; right -= 2) {
		if (right == 6)
			right = 5;
		for (int vert = 0; vert < n; vert++) {
			for (int j = 0; j < 2; j++) {
				int x = right - j;
				int up = ((right + 1) & 2) == 0;
				int y = up ? n - 1 - vert : vert;
				if (!q->func[y][x] && i < nbits) {
					q->dark[y][x] = (cw[i >> 3] >> (7 - (i & 7))) & 1u;
					i++;
				}
			}
		}
	}
	free(cw);
	/* choose the mask with the lowest penalty */
	long best = -1;
	int best_mask = 0;
	for (int m = 0; m < 8; m++) {
		apply_mask(q, m);
		draw_format(q, m);
		long p = penalty(q);
		if (best < 0 || p < best) {
			best = p;
			best_mask = m;
		}
		apply_mask(q, m);   /* XOR again: undo */
	}
	apply_mask(q, best_mask);
	draw_format(q, best_mask);
	q->mask = best_mask;
	return 0;
}

int qr_svg(const struct qr *q, struct buf *b, unsigned px)
{
	int n = q->size + 8, rc = 0;
	rc |= buf_appendf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
			     "width=\"%u\" height=\"%u\" shape-rendering=\"crispEdges\" role=\"img\">"
			     "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/><path fill=\"#000\" d=\"",
			  n, n, px, px, n, n);
	for (int y = 0; y < q->size; y++) {
		for (int x = 0; x < q->size;) {
			if (!q->dark[y][x]) {
				x++;
				continue;
			}
			int run = 0;
			while (x + run < q->size && q->dark[y][x + run])
				run++;
			rc |= buf_appendf(b, "M%d %dh%dv1h-%dz", x + 4, y + 4, run, run);
			x += run;
		}
	}
	rc |= buf_appendstr(b, "\"/></svg>");
	return rc ? -1 : 0;
}
