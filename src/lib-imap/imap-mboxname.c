/* imap-mboxname.c - which mailbox names postino accepts (IMAP, the store, IMAP URLs). */
#include "imap-mboxname.h"

#include <string.h>

/* Is this a mailbox name we accept? No empty components, "." or "..", control characters. */
int imap_mboxname_valid(const char *name)
{
	size_t n = strlen(name), depth = 1;
	if (n == 0 || n > IMAP_MBOXNAME_MAX)
		return 0;
	for (size_t i = 0, start = 0; i <= n; i++) {
		unsigned char c = (unsigned char)name[i];
		if ((c < 0x20 && c != '\0') || c == 0x7f)
			return 0;
		if (c != '/' && c != '\0')
			continue;
		size_t len = i - start;   /* the component name[start..i) */
		if (len == 0 || (len == 1 && name[start] == '.') ||
		    (len == 2 && name[start] == '.' && name[start + 1] == '.'))
			return 0;
		if (name[start] == '~')
			return 0;   /* "~user" means a home directory to other mail tools */
		if (c == '/' && ++depth > IMAP_MBOXNAME_DEPTH_MAX)
			return 0;
		start = i + 1;
	}
	return 1;
}
