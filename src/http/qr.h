/* qr.h - a QR Code encoder (ISO/IEC 18004): byte mode, error correction level M, the smallest
 * version (1..40) that holds the data, the mask with the lowest penalty; output as SVG.
 */
#ifndef POSTINO_QR_H
#define POSTINO_QR_H

#include <stddef.h>

#include "buf.h"

#define QR_SIZE_MAX 177                 /* version 40: 17 + 4 * 40 modules */
#define QR_BYTES_MAX 2331               /* byte-mode capacity of version 40-M */

struct qr {
	int version;
	int size;
	int mask;
	unsigned char dark[QR_SIZE_MAX][QR_SIZE_MAX];    /* [row][column], 1 = dark */
	unsigned char func[QR_SIZE_MAX][QR_SIZE_MAX];    /* function pattern (not data) */
};

/* Encode len bytes. 0 ok, -1 too long for version 40-M. */
int qr_encode(const void *data, size_t len, struct qr *q);
/* Append an <svg> element (4-module quiet zone; px: width in CSS pixels). -1 if b is full. */
int qr_svg(const struct qr *q, struct buf *b, unsigned px);

/* Building blocks, exposed for the tests. */
/* Smallest version whose M level holds len bytes in byte mode, or -1. */
int qr_version_for(size_t len);
/* Reed-Solomon error correction codewords (GF(256), polynomial 0x11D) of n data codewords. */
void qr_rs_ecc(const unsigned char *data, size_t n, unsigned ecc_len, unsigned char *out);
/* The 15 format bits (level M) for a mask, with the BCH code and the 0x5412 mask applied. */
unsigned qr_format_bits(int mask);
/* The 18 version bits (versions >= 7). */
unsigned qr_version_bits(int version);

#endif
