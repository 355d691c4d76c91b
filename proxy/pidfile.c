/*
 * pidfile.c — the pid file. See pidfile.h.
 *
 * A live process counts as a Portico when its /proc/PID/comm is ours: the binary may have been
 * renamed, but both ends of the comparison are the same binary.
 *
 * Checking and writing are two steps: two Porticos starting at once could both find the file
 * stale and both serve. The claim closes that window as addrlock.c does for addresses: an
 * abstract unix socket named after the user and the file, bound atomically, gone with the
 * process or at the stop.
 */
#include "portico/pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "portico/upgrade.h"
#include "portico/util.h"

/* What read_pid found when no pid is there */
enum {
    PID_NONE = 0,        /* no file, or an empty one */
    PID_UNREADABLE = -1, /* errno says why */
    PID_NOT_PID = -2,    /* something else: not ours to replace */
};

/* The pid written in path (> 0: a line of digits), or one of the PID_* values above. */
static long read_pid(const char *path)
{
    char buf[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? PID_NONE : PID_UNREADABLE;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return n == 0 ? PID_NONE : PID_UNREADABLE;
    buf[n] = '\0';
    char *end;
    errno = 0;
    long pid = strtol(buf, &end, 10);
    bool number = errno == 0 && end != buf && buf[0] >= '0' && buf[0] <= '9' &&
                  (*end == '\0' || (*end == '\n' && end[1] == '\0'));
    return number && pid > 0 && pid <= 0x7fffffff ? pid : PID_NOT_PID;
}

/* /proc/PID/comm (or "self") into buf; false when unreadable. */
static bool comm_of(const char *pid, char *buf, size_t size)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%s/comm", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool ok = fgets(buf, (int)size, f) != NULL;
    fclose(f);
    return ok;
}

/* Whether pid has ended but is not reaped yet (a zombie): kill(pid, 0) still finds it. An
 * upgrade's new process that died after saying it serves stays one while the old process, its
 * parent, drains; its pid file must not hold a new start back meanwhile. */
static bool is_zombie(long pid)
{
    char path[64], stat[512];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool ok = fgets(stat, sizeof(stat), f) != NULL;
    fclose(f);
    const char *end = ok ? strrchr(stat, ')') : NULL; /* after the name, which may hold one */
    return end && end[1] == ' ' && (end[2] == 'Z' || end[2] == 'X');
}

/* A live process running our binary. Without /proc, a live process is assumed to be one. */
static bool is_live_portico(long pid)
{
    if (pid == getpid()) /* a container restarted with our pid: the file is its predecessor's */
        return false;
    if ((kill((pid_t)pid, 0) != 0 && errno != EPERM) || is_zombie(pid))
        return false;
    char spid[24], theirs[64], ours[64];
    snprintf(spid, sizeof(spid), "%ld", pid);
    if (!comm_of(spid, theirs, sizeof(theirs)) || !comm_of("self", ours, sizeof(ours)))
        return true;
    return strcmp(theirs, ours) == 0;
}

/* path made absolute (its directory resolved) into out; false when it does not fit */
static bool absolute_path(const char *path, char *out, size_t size)
{
    char *copy = strdup(path), *dir_real = NULL;
    if (!copy)
        return false;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    dir_real = realpath(dirname(copy), NULL); /* "." for a bare name */
    int n = dir_real ? snprintf(out, size, "%s/%s", dir_real, base)
                     : snprintf(out, size, "%s", path); /* pidfile_write will say why */
    free(dir_real);
    free(copy);
    return n > 0 && (size_t)n < size;
}

int pidfile_claim(const char *path, bool *handed)
{
    char abs[PATH_MAX + 256];
    if (!absolute_path(path, abs, sizeof(abs))) {
        fprintf(stderr, "portico: pid_file %s: path too long\n", path);
        return -1;
    }
    uint64_t hash = 0xcbf29ce484222325ULL; /* FNV-1a: a path may not fit in sun_path */
    for (const char *c = abs; *c; c++)
        hash = (hash ^ (unsigned char)*c) * 0x100000001b3ULL;
    char name[64], key[24];
    snprintf(key, sizeof(key), "%016llx", (unsigned long long)hash);
    /* Handed over by the Portico this one upgrades (upgrade.h): the file names it, and it
     * goes once we serve. */
    int fd = upgrade_take_claim("portico-pid", key);
    if (fd >= 0) {
        *handed = true;
        return fd;
    }
    *handed = false;
    snprintf(name, sizeof(name), "portico-pid/%u/%s", (unsigned)geteuid(), key);
    fd = abstract_lock(name);
    if (fd >= 0)
        return fd;
    int err = errno;
    if (err == EADDRINUSE)
        fprintf(stderr, "portico: pid_file %s: another Portico is starting or running with it\n",
                path);
    else
        fprintf(stderr, "portico: pid_file %s: cannot claim it: %s\n", path, strerror(err));
    return -1;
}

int pidfile_check(const char *path)
{
    long pid = read_pid(path);
    if (pid == PID_UNREADABLE) {
        fprintf(stderr, "portico: pid_file %s: %s\n", path, strerror(errno));
        return -1;
    }
    /* A pid_file line naming the wrong file (the config, a log) would have it replaced. */
    if (pid == PID_NOT_PID) {
        fprintf(stderr, "portico: pid_file %s: holds something other than a pid; not "
                        "replacing it\n", path);
        return -1;
    }
    if (pid > 0 && is_live_portico(pid)) {
        fprintf(stderr, "portico: pid_file %s: Portico is already running as pid %ld\n", path,
                pid);
        return -1;
    }
    return 0;
}

/* Writes line into a new file fd. 0, or an errno value. */
static int write_line(int fd, const char *line, size_t n)
{
    if (fchmod(fd, 0644) != 0)
        return errno;
    ssize_t w = write(fd, line, n);
    if (w < 0)
        return errno;
    return (size_t)w == n ? 0 : ENOSPC; /* a short write of a few bytes: a full disk */
}

int pidfile_write(const char *path)
{
    size_t len = strlen(path);
    char *tmp = malloc(len + sizeof(".XXXXXX"));
    if (!tmp) {
        fprintf(stderr, "portico: pid_file %s: out of memory\n", path);
        return -1;
    }
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".XXXXXX", sizeof(".XXXXXX"));
    char line[24];
    int n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
    int err = 0;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        err = errno;
    } else {
        err = write_line(fd, line, (size_t)n);
        if (close(fd) != 0 && !err)
            err = errno;
        if (!err && rename(tmp, path) != 0)
            err = errno;
        if (err)
            unlink(tmp);
    }
    if (err)
        fprintf(stderr, "portico: pid_file %s: %s\n", path, strerror(err));
    free(tmp);
    return err ? -1 : 0;
}

bool pidfile_names_us(const char *path)
{
    return read_pid(path) == getpid();
}

int pidfile_remove(const char *path)
{
    if (read_pid(path) != getpid())
        return 0; /* not ours any more: another process wrote it */
    return unlink(path);
}

bool pidfile_removable(const char *path)
{
    if (!dir_takes_files(path))
        return false;
    char *copy = strdup(path);
    if (!copy)
        return true;
    const char *dir = dirname(copy); /* "." for a bare name: the working directory */
    struct stat ds, fs;
    bool ok = true;
    /* unlink(2) in a sticky directory also needs the file or the directory to be ours; a file
     * not there yet (`portico -t` before the first start) will be the start's, written as root
     * before the switch */
    uid_t owner = lstat(path, &fs) == 0 ? fs.st_uid : 0;
    if (stat(dir, &ds) == 0 && (ds.st_mode & S_ISVTX) && ds.st_uid != geteuid() &&
        owner != geteuid())
        ok = false;
    free(copy);
    return ok;
}
