/* Internal: writing a file so that it is never lost or left half-written.
 *
 * The new contents go to a temporary file in the destination's folder (named
 * ".<name>.tmp-<random>", created with O_EXCL and the usual 0666 & ~umask mode, or the
 * replaced file's mode), which is flushed to disk with fsync and then renamed over the
 * destination; the folder is fsynced too. Any failure before the rename (a full disk,
 * RLIMIT_FSIZE, a read-only folder) removes the temporary file and leaves whatever was
 * at the destination untouched. Only a crash of the process itself can leave a
 * temporary file behind.
 *
 * A destination that is a symbolic link is followed (as fopen would): the link's final
 * target is replaced and the link kept; a dangling link creates its target. A directory
 * or any other file that is not a regular file is refused (renaming over /dev/null as
 * root would replace the device). Errors are REPQ_ERR_IO with a message naming the
 * destination and the system's reason. */
#ifndef REPQ_IO_REPLACE_FILE_H
#define REPQ_IO_REPLACE_FILE_H

#include <stddef.h>

#include "core/object.h"

#define REPQ_PATH_CAPACITY 4096

typedef struct repq_replace_file {
    int fd;                            /* of the temporary file, -1 when none is open */
    const char *path;                  /* as the caller named it (for messages) */
    char target[REPQ_PATH_CAPACITY];   /* the file that is replaced, symbolic links followed */
    char temp[REPQ_PATH_CAPACITY + 256]; /* folder, '.', at most 200 bytes of the name, suffix */
} repq_replace_file;

/* Resolve the destination and create the temporary file. On failure nothing is left. */
repq_status repq_replace_open(repq_object *err, const char *path, repq_replace_file *f);
/* Append `size` bytes to the temporary file. On failure the temporary file is removed. */
repq_status repq_replace_write(repq_object *err, repq_replace_file *f, const void *data, size_t size);
/* fsync, close and rename over the destination, then fsync its folder. On failure the
 * temporary file is removed and the destination is what it was. */
repq_status repq_replace_commit(repq_object *err, repq_replace_file *f);
/* Close and remove the temporary file (after a failure of the caller's own). Safe to
 * call on a file that failed or was committed. */
void repq_replace_abort(repq_replace_file *f);

#endif
