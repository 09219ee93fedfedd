#include "io/replace_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINKS 40      /* as the kernel's own limit on a path's symbolic links */
#define MAX_NAME_KEPT 200 /* of the destination's name in the temporary's, under NAME_MAX */

static repq_status fail_errno(repq_object *err, const char *path, const char *what, int e)
{
    return repq_fail(err, REPQ_ERR_IO, "cannot save '%s': %s: %s (the previous file, if any, is unchanged)",
                     path, what, strerror(e));
}

/* The folder part of `path` ("." when it has none) into `dir`; false if too long. */
static bool folder_of(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return snprintf(dir, cap, ".") < (int)cap;
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    if (len >= cap)
        return false;
    memcpy(dir, path, len);
    dir[len] = '\0';
    return true;
}

/* Follow symbolic links from `path` to the file that is replaced. *mode receives its mode
 * when it exists (0 when it does not). */
static repq_status resolve_target(repq_object *err, const char *path, char *target, mode_t *mode)
{
    if (snprintf(target, REPQ_PATH_CAPACITY, "%s", path) >= REPQ_PATH_CAPACITY)
        return fail_errno(err, path, "resolving the path", ENAMETOOLONG);
    for (int hops = 0; hops <= MAX_LINKS; hops++) {
        struct stat sb;
        if (lstat(target, &sb) != 0) {
            if (errno != ENOENT)
                return fail_errno(err, path, target, errno);
            *mode = 0;
            return REPQ_OK;
        }
        if (S_ISDIR(sb.st_mode))
            return repq_fail(err, REPQ_ERR_IO, "cannot save '%s': '%s' is a directory", path, target);
        if (S_ISREG(sb.st_mode)) {
            *mode = sb.st_mode & 07777;
            return REPQ_OK;
        }
        if (!S_ISLNK(sb.st_mode))
            return repq_fail(err, REPQ_ERR_IO, "cannot save '%s': '%s' is not a regular file", path, target);
        char link[REPQ_PATH_CAPACITY];
        ssize_t n = readlink(target, link, sizeof link - 1);
        if (n < 0)
            return fail_errno(err, path, target, errno);
        link[n] = '\0';
        char next[REPQ_PATH_CAPACITY], dir[REPQ_PATH_CAPACITY];
        int len;
        if (link[0] == '/')
            len = snprintf(next, sizeof next, "%s", link);
        else if (folder_of(target, dir, sizeof dir))
            len = snprintf(next, sizeof next, "%s/%s", dir, link);
        else
            len = -1;
        if (len < 0 || len >= (int)sizeof next)
            return fail_errno(err, path, "following its symbolic links", ENAMETOOLONG);
        memcpy(target, next, (size_t)len + 1);
    }
    return fail_errno(err, path, "following its symbolic links", ELOOP);
}

repq_status repq_replace_open(repq_object *err, const char *path, repq_replace_file *f)
{
    f->fd = -1;
    f->path = path;
    f->temp[0] = '\0';
    mode_t mode = 0;
    repq_status st = resolve_target(err, path, f->target, &mode);
    if (st)
        return st;
    char dir[REPQ_PATH_CAPACITY];
    if (!folder_of(f->target, dir, sizeof dir))
        return fail_errno(err, path, "resolving the path", ENAMETOOLONG);
    const char *slash = strrchr(f->target, '/');
    const char *name = slash ? slash + 1 : f->target;
    /* A name that cannot collide with another writer's: the process, the time and the
     * attempt; O_EXCL makes sure. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint32_t salt = (uint32_t)getpid() * 2654435761u ^ (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec;
    for (uint32_t attempt = 0; attempt < 100; attempt++) {
        int len = snprintf(f->temp, sizeof f->temp, "%s/.%.*s.tmp-%08x", dir, MAX_NAME_KEPT, name,
                           (unsigned)(salt + attempt * 0x9E3779B9u));
        if (len < 0 || (size_t)len >= sizeof f->temp) {
            f->temp[0] = '\0';
            return fail_errno(err, path, "naming a temporary file beside it", ENAMETOOLONG);
        }
        f->fd = open(f->temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f->fd >= 0)
            break;
        if (errno != EEXIST) {
            int e = errno;
            f->temp[0] = '\0';
            return fail_errno(err, path, "creating a temporary file beside it", e);
        }
    }
    if (f->fd < 0) {
        f->temp[0] = '\0';
        return fail_errno(err, path, "creating a temporary file beside it", EEXIST);
    }
    /* The replacement keeps the permissions of the file it replaces. */
    if (mode != 0 && fchmod(f->fd, mode) != 0) {
        int e = errno;
        repq_replace_abort(f);
        return fail_errno(err, path, "copying the permissions", e);
    }
    return REPQ_OK;
}

repq_status repq_replace_write(repq_object *err, repq_replace_file *f, const void *data, size_t size)
{
    const uint8_t *p = data;
    while (size > 0) {
        ssize_t n = write(f->fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            repq_replace_abort(f);
            return fail_errno(err, f->path, "writing", e);
        }
        p += n;
        size -= (size_t)n;
    }
    return REPQ_OK;
}

repq_status repq_replace_commit(repq_object *err, repq_replace_file *f)
{
    if (fsync(f->fd) != 0) {
        int e = errno;
        repq_replace_abort(f);
        return fail_errno(err, f->path, "flushing to disk", e);
    }
    int fd = f->fd;
    f->fd = -1;
    if (close(fd) != 0) {
        int e = errno;
        repq_replace_abort(f);
        return fail_errno(err, f->path, "closing", e);
    }
    if (rename(f->temp, f->target) != 0) {
        int e = errno;
        repq_replace_abort(f);
        return fail_errno(err, f->path, "renaming the temporary file over it", e);
    }
    f->temp[0] = '\0';
    /* The rename itself reaches the disk with the folder. Some file systems cannot fsync a
     * folder (EINVAL); the file is in place either way. */
    char dir[REPQ_PATH_CAPACITY];
    if (folder_of(f->target, dir, sizeof dir)) {
        int dfd = open(dir, O_RDONLY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return REPQ_OK;
}

void repq_replace_abort(repq_replace_file *f)
{
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
    if (f->temp[0]) {
        unlink(f->temp);
        f->temp[0] = '\0';
    }
}
