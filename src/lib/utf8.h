/* utf8.h - UTF-8 output shared by the mailbox-name and header decoders. */
#ifndef POSTINO_UTF8_H
#define POSTINO_UTF8_H

#include <stdint.h>

#include "buf.h"

/* Append code point cp (a Unicode scalar value) as UTF-8. 0 ok, -1 out is full. */
int utf8_append(struct buf *out, uint32_t cp);

#endif
