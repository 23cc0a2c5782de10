/* store-structure.c - IMAP's ENVELOPE, BODY and BODYSTRUCTURE, computed once when a message is
 * stored and kept in index.db, so FETCH of them never rereads the message. */
#include "store-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "fsutil.h"
#include "mime.h"

#define STRUCTURE_MAX (1u << 20)   /* larger structures are not cached (computed on demand) */
#define STORE_HEADER_CACHE_MAX 32768   /* larger header sections are read from the file */

/* Parse the message in fd and render the three strings; on any failure they stay NULL. */
void store_structure_compute(int fd, uint64_t size, struct store_structure *sc)
{
	memset(sc, 0, sizeof(*sc));
	if (size == 0 || size > SIZE_MAX)
		return;
	struct fs_view view;
	if (fs_view_open(&view, fd, (size_t)size) < 0)
		return;
	store_structure_compute_mem(view.data, (size_t)size, sc);
	fs_view_close(&view);
}

/* The same from the message in memory (APPEND has it there: no reading the file back). */
void store_structure_compute_mem(const char *msg, size_t size, struct store_structure *sc)
{
	memset(sc, 0, sizeof(*sc));
	if (size == 0)
		return;
	struct mime_part *root = mime_parse(msg, size);
	struct buf bs, body, env;
	buf_init(&bs, STRUCTURE_MAX);
	buf_init(&body, STRUCTURE_MAX);
	buf_init(&env, STRUCTURE_MAX);
	if (root && mime_bodystructure(root, msg, 1, &bs) == 0 &&
	    mime_bodystructure(root, msg, 0, &body) == 0 &&
	    mime_envelope(msg, mime_header_len(msg, size), &env) == 0 && bs.data &&
	    body.data && env.data) {
		size_t hl = mime_header_len(msg, size);
		if (hl > 0 && hl <= STORE_HEADER_CACHE_MAX && (sc->header = malloc(hl)) != NULL) {
			memcpy(sc->header, msg, hl);
			sc->header_len = hl;
		}
		sc->bodystructure = bs.data;
		sc->body = body.data;
		sc->envelope = env.data;
	} else {
		buf_free(&bs);
		buf_free(&body);
		buf_free(&env);
	}
	mime_free(&root);
}

/* Free the strings. */
void store_structure_free(struct store_structure *sc)
{
	free(sc->bodystructure);
	free(sc->body);
	free(sc->envelope);
	free(sc->header);
	memset(sc, 0, sizeof(*sc));
}

/* Store the strings for (box, uid) inside the caller's transaction (best effort). */
void store_structure_save(struct store_account *a, int64_t box_id, uint32_t uid,
			  const struct store_structure *sc)
{
	sqlite3_stmt *st;
	if (sc->bodystructure == NULL ||
	    store_prepare(a, "INSERT OR REPLACE INTO structure(mailbox_id, uid, "
			       "bodystructure, body, envelope, header) VALUES (?, ?, ?, ?, ?, ?)", -1, &st,
			       NULL) != SQLITE_OK)
		return;
	sqlite3_bind_int64(st, 1, box_id);
	sqlite3_bind_int64(st, 2, uid);
	sqlite3_bind_text(st, 3, sc->bodystructure, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, sc->body, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, sc->envelope, -1, SQLITE_STATIC);
	if (sc->header)
		sqlite3_bind_blob(st, 6, sc->header, (int)sc->header_len, SQLITE_STATIC);
	sqlite3_step(st);
	store_finalize(a, st);
}

/* The cached strings of a message: 1 found (sc filled, free with store_structure_free), 0 not. */
int store_structure_get(struct store_account *a, const char *box, uint32_t uid,
			struct store_structure *sc)
{
	sqlite3_stmt *st;
	memset(sc, 0, sizeof(*sc));
	if (store_prepare(a, "SELECT s.bodystructure, s.body, s.envelope FROM structure s "
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
	store_finalize(a, st);
	return found;
}

struct store_header_cursor {
	struct store_account *a;
	sqlite3_stmt *st;
	char box[1024];
};

/* The cursor's query: one of the handle's cached statements (sqldb_prepare finds it by this
 * address), not parsed again for every FETCH, SEARCH or SORT that reads header sections. */
static const char header_sql[] = "SELECT s.header FROM structure s WHERE s.mailbox_id = "
				 "(SELECT id FROM mailboxes WHERE name = ?1) AND s.uid = ?2";

/* A cursor over the cached headers of box. 0, or -1 (then nothing is cached: read the files). */
int store_header_open(struct store_account *a, const char *box, struct store_header_cursor **c_r)
{
	*c_r = NULL;
	struct store_header_cursor *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -1;
	if (snprintf(c->box, sizeof(c->box), "%s",
		     box == NULL || strcasecmp(box, "INBOX") == 0 ? "INBOX" : box) >=
		    (int)sizeof(c->box) ||
	    store_prepare(a, header_sql, -1, &c->st, NULL) != SQLITE_OK) {
		free(c);
		return -1;
	}
	c->a = a;
	*c_r = c;
	return 0;
}

/* Both parameters are bound at every call: the cached statement may have served another
 * cursor of the same handle (another session's) since this one's last call. */
int store_header_get(struct store_header_cursor *c, uint32_t uid, const char **hdr_r,
		     size_t *len_r)
{
	if (c == NULL)
		return 0;
	sqlite3_reset(c->st);
	sqlite3_bind_text(c->st, 1, c->box, -1, SQLITE_STATIC);
	sqlite3_bind_int64(c->st, 2, uid);
	if (sqlite3_step(c->st) != SQLITE_ROW || sqlite3_column_type(c->st, 0) != SQLITE_BLOB)
		return 0;
	*len_r = (size_t)sqlite3_column_bytes(c->st, 0);
	*hdr_r = sqlite3_column_blob(c->st, 0);
	return *hdr_r != NULL && *len_r > 0;
}

void store_header_close(struct store_header_cursor **cp)
{
	if (*cp == NULL)
		return;
	store_finalize((*cp)->a, (*cp)->st);
	free(*cp);
	*cp = NULL;
}
