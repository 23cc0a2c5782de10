/* test-fsutil.c - unit tests for fsutil.c: file views read small files and map big ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"

/* An unlinked temp file holding len octets of a pattern. */
static int temp_file(size_t len)
{
	char path[] = "/tmp/test-fsutil.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	char *p = malloc(len + 1);
	assert_non_null(p);
	for (size_t i = 0; i < len; i++)
		p[i] = (char)('a' + i % 26);
	assert_int_equal(fs_write_all(fd, p, len), 0);
	free(p);
	return fd;
}

/* The view holds exactly the file's octets. */
static void check_view(const struct fs_view *v, size_t len)
{
	assert_int_equal(v->len, len);
	for (size_t i = 0; i < len; i++)
		if (v->data[i] != (char)('a' + i % 26))
			fail_msg("octet %zu differs", i);
}

/* A small file is read into memory, a big one mapped; both show the same octets. */
static void test_view_small_and_big(void **state)
{
	(void)state;
	struct fs_view v;
	int fd = temp_file(4407);
	assert_int_equal(fs_view_open(&v, fd, 4407), 0);
	assert_int_equal(v.mapped, 0);
	check_view(&v, 4407);
	fs_view_close(&v);
	assert_null(v.data);
	fs_view_close(&v);   /* twice is fine */
	close(fd);

	fd = temp_file(FS_VIEW_READ_MAX + 1);
	assert_int_equal(fs_view_open(&v, fd, FS_VIEW_READ_MAX + 1), 0);
	assert_int_equal(v.mapped, 1);
	check_view(&v, FS_VIEW_READ_MAX + 1);
	fs_view_close(&v);
	close(fd);

	fd = temp_file(FS_VIEW_READ_MAX);   /* the largest read one */
	assert_int_equal(fs_view_open(&v, fd, FS_VIEW_READ_MAX), 0);
	assert_int_equal(v.mapped, 0);
	check_view(&v, FS_VIEW_READ_MAX);
	fs_view_close(&v);
	close(fd);
}

/* Empty views, and a file shorter than asked for. */
static void test_view_edges(void **state)
{
	(void)state;
	struct fs_view v;
	int fd = temp_file(10);
	assert_int_equal(fs_view_open(&v, fd, 0), 0);
	assert_null(v.data);
	assert_int_equal(v.len, 0);
	fs_view_close(&v);
	errno = 0;
	assert_int_equal(fs_view_open(&v, fd, 11), -1);   /* the file changed under us */
	assert_int_equal(errno, EIO);
	assert_null(v.data);
	close(fd);
	assert_int_equal(fs_view_open(&v, fd, 5), -1);     /* closed descriptor */
	assert_int_equal(errno, EBADF);
}

/* Run all fsutil tests. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_view_small_and_big),
		cmocka_unit_test(test_view_edges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
