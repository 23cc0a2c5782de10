/*
 * proctree - what the bench load generators measure of a server: its process tree under
 * /proc, each process's CPU ticks and memory. Linux only. Built into idlebench and imapbench
 * (their run scripts pass this directory's proctree.c and -I to gcc).
 */
#ifndef BENCH_PROCTREE_H
#define BENCH_PROCTREE_H

#include <stddef.h>

struct proc_info {
	int pid, ppid;
	char comm[32];
	long ticks;    /* utime + stime, clock ticks */
};

/* The processes of the tree under root (root included, if it exists): how many, in *ps_r,
 * which the caller frees. Exits the program when /proc cannot be read or memory runs out. */
size_t proc_tree(int root, struct proc_info **ps_r);

/* The number on the line starting with key (e.g. "Pss:") in path, in kB. 0, or -1 when the
 * file or the line is missing. */
int proc_read_kb(const char *path, const char *key, long *val);

/* Pss and Rss of pid in kB, from /proc/PID/smaps_rollup. 0, or -1 (the process is gone or the
 * kernel has no smaps_rollup). */
int proc_mem_kb(int pid, long *pss_kb, long *rss_kb);

/* The anonymous and shared-memory part of pid's Pss in kB (Pss_Anon + Pss_Shmem): what the
 * process allocated itself, without the pages of files it maps, whose share moves whenever other
 * processes on the machine map the same libraries. 0, or -1 (gone, or an older kernel). */
int proc_anon_kb(int pid, long *anon_kb);

#endif
