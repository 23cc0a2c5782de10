/* imap-mboxname.h - the mailbox names postino accepts.
 *
 * A mailbox name is data: the store turns it into a directory name by escaping, and this check
 * keeps out what no client needs and other mail tools read as paths ("..", "~user", control
 * characters). Used by the IMAP commands, the store and the IMAP URL parser. */
#ifndef POSTINO_IMAP_MBOXNAME_H
#define POSTINO_IMAP_MBOXNAME_H

#define IMAP_MBOXNAME_MAX 255        /* octets of a mailbox name */
#define IMAP_MBOXNAME_DEPTH_MAX 16   /* hierarchy levels of a mailbox name */

/* 1 if `name` is an acceptable mailbox name (no empty, "." or ".." components, no control
 * characters, no component starting with '~', at most 255 octets and 16 levels), else 0. */
int imap_mboxname_valid(const char *name);

#endif
