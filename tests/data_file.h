/* Reading the bundled reference files in tests: a file of exactly the expected size. */
#ifndef REPQ_TESTS_DATA_FILE_H
#define REPQ_TESTS_DATA_FILE_H

#include <stddef.h>

/* Reads all of `path` into dst; fails the running cmocka test unless the file is
 * exactly `size` bytes. */
void data_file_read(const char *path, void *dst, size_t size);

#endif
