/* proctree - process tree, CPU and memory of a server under /proc (see proctree.h). */
#define _GNU_SOURCE
#include "proctree.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *must(void *p)
{
	if (!p) {
		perror("proctree");
		exit(1);
	}
	return p;
}

size_t proc_tree(int root, struct proc_info **ps_r)
{
	size_t cap = 1024, n = 0;
	struct proc_info *ps = must(malloc(cap * sizeof *ps));
	DIR *d = must(opendir("/proc"));
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		char path[64], buf[1024];
		snprintf(path, sizeof path, "/proc/%.20s/stat", de->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t got = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[got] = 0;
		char *lp = strchr(buf, '('), *rp = strrchr(buf, ')');
		if (!lp || !rp)
			continue;
		if (n == cap) {
			cap *= 2;
			ps = must(realloc(ps, cap * sizeof *ps));
		}
		ps[n].pid = atoi(buf);
		snprintf(ps[n].comm, sizeof ps[n].comm, "%.*s", (int)(rp - lp - 1), lp + 1);
		char state;
		unsigned long ut = 0, st = 0;
		/* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
		if (sscanf(rp + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &state,
			   &ps[n].ppid, &ut, &st) != 4)
			continue;
		ps[n].ticks = (long)(ut + st);
		n++;
	}
	closedir(d);
	/* mark the descendants of root (repeat until no change; trees are shallow) */
	char *in = must(calloc(n ? n : 1, 1));
	for (size_t i = 0; i < n; i++)
		if (ps[i].pid == root)
			in[i] = 1;
	for (int changed = 1; changed;) {
		changed = 0;
		for (size_t i = 0; i < n; i++) {
			if (in[i])
				continue;
			for (size_t j = 0; j < n; j++)
				if (in[j] && ps[j].pid == ps[i].ppid) {
					in[i] = 1;
					changed = 1;
					break;
				}
		}
	}
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (in[i])
			ps[m++] = ps[i];
	free(in);
	*ps_r = ps;
	return m;
}

int proc_read_kb(const char *path, const char *key, long *val)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char line[256];
	size_t kl = strlen(key);
	int found = -1;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, key, kl) == 0) {
			*val = atol(line + kl);
			found = 0;
			break;
		}
	fclose(f);
	return found;
}

int proc_mem_kb(int pid, long *pss_kb, long *rss_kb)
{
	char path[64];
	*pss_kb = *rss_kb = 0;
	snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
	if (proc_read_kb(path, "Pss:", pss_kb) < 0)
		return -1;
	proc_read_kb(path, "Rss:", rss_kb);
	return 0;
}

int proc_anon_kb(int pid, long *anon_kb)
{
	char path[64];
	long shmem = 0;
	*anon_kb = 0;
	snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
	if (proc_read_kb(path, "Pss_Anon:", anon_kb) < 0)
		return -1;
	proc_read_kb(path, "Pss_Shmem:", &shmem);
	*anon_kb += shmem;
	return 0;
}
