/* store-structure.c - IMAP's ENVELOPE, BODY and BODYSTRUCTURE, computed once when a message is
 * stored and kept in index.db, so FETCH of them never rereads the message. */
#include "store-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>

#include "buf.h"
#include "mime.h"

#define STRUCTURE_MAX (1u << 20)   /* larger structures are not cached (computed on demand) */

/* Parse the message in fd and render the three strings; on any failure they stay NULL. */
void store_structure_compute(int fd, uint64_t size, struct store_structure *sc)
{
	memset(sc, 0, sizeof(*sc));
	if (size == 0 || size > SIZE_MAX)
		return;
	void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		return;
	const char *msg = map;
	struct mime_part *root = mime_parse(msg, (size_t)size);
	struct buf bs, body, env;
	buf_init(&bs, STRUCTURE_MAX);
	buf_init(&body, STRUCTURE_MAX);
	buf_init(&env, STRUCTURE_MAX);
	if (root && mime_bodystructure(root, msg, 1, &bs) == 0 &&
	    mime_bodystructure(root, msg, 0, &body) == 0 &&
	    mime_envelope(msg, mime_header_len(msg, (size_t)size), &env) == 0 && bs.data &&
	    body.data && env.data) {
		sc->bodystructure = bs.data;
		sc->body = body.data;
		sc->envelope = env.data;
	} else {
		buf_free(&bs);
		buf_free(&body);
		buf_free(&env);
	}
	mime_free(&root);
	munmap(map, (size_t)size);
}

/* Free the strings. */
void store_structure_free(struct store_structure *sc)
{
	free(sc->bodystructure);
	free(sc->body);
	free(sc->envelope);
	memset(sc, 0, sizeof(*sc));
}

/* Store the strings for (box, uid) inside the caller's transaction (best effort). */
void store_structure_save(struct store_account *a, int64_t box_id, uint32_t uid,
			  const struct store_structure *sc)
{
	sqlite3_stmt *st;
	if (sc->bodystructure == NULL ||
	    sqlite3_prepare_v2(a->db, "INSERT OR REPLACE INTO structure(mailbox_id, uid, "
			       "bodystructure, body, envelope) VALUES (?, ?, ?, ?, ?)", -1, &st,
			       NULL) != SQLITE_OK)
		return;
	sqlite3_bind_int64(st, 1, box_id);
	sqlite3_bind_int64(st, 2, uid);
	sqlite3_bind_text(st, 3, sc->bodystructure, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, sc->body, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, sc->envelope, -1, SQLITE_STATIC);
	sqlite3_step(st);
	sqlite3_finalize(st);
}

/* The cached strings of a message: 1 found (sc filled, free with store_structure_free), 0 not. */
int store_structure_get(struct store_account *a, const char *box, uint32_t uid,
			struct store_structure *sc)
{
	sqlite3_stmt *st;
	memset(sc, 0, sizeof(*sc));
	if (sqlite3_prepare_v2(a->db, "SELECT s.bodystructure, s.body, s.envelope FROM structure s "
			       "JOIN mailboxes b ON b.id = s.mailbox_id WHERE b.name = ? AND "
			       "s.uid = ?", -1, &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(st, 1, box == NULL || strcasecmp(box, "INBOX") == 0 ? "INBOX" : box, -1,
			  SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, uid);
	int found = 0;
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) &&
	    sqlite3_column_text(st, 1) && sqlite3_column_text(st, 2)) {
		sc->bodystructure = strdup((const char *)sqlite3_column_text(st, 0));
		sc->body = strdup((const char *)sqlite3_column_text(st, 1));
		sc->envelope = strdup((const char *)sqlite3_column_text(st, 2));
		found = sc->bodystructure && sc->body && sc->envelope;
		if (!found)
			store_structure_free(sc);
	}
	sqlite3_finalize(st);
	return found;
}
