/*
 * rawread: the floor for `clawflow flows list`: readdir() the spool's flows/, and for every
 * flow open and read its manifest.json and every file in its tasks/ directory. No parsing,
 * no locking, no output but a one-line count (so the reads cannot be skipped).
 *
 *   rawread SPOOL
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char buf[1 << 20];

static long read_all(int dirfd, const char *name) {
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    long total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) { if (errno == EINTR) continue; total = -1; break; }
        if (n == 0) break;
        total += n;
    }
    close(fd);
    return total;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: rawread SPOOL\n"); return 64; }
    int root = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) { perror(argv[1]); return 1; }
    int flowsfd = openat(root, "flows", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (flowsfd < 0) { perror("flows"); return 1; }
    DIR *flows = fdopendir(flowsfd);
    long nflows = 0, nfiles = 0, bytes = 0, errors = 0;
    struct dirent *e;
    while ((e = readdir(flows)) != NULL) {
        if (e->d_name[0] == '.') continue;
        int flowfd = openat(flowsfd, e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (flowfd < 0) { errors++; continue; }
        nflows++;
        long n = read_all(flowfd, "manifest.json");
        if (n < 0) errors++; else { bytes += n; nfiles++; }
        int tasksfd = openat(flowfd, "tasks", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (tasksfd >= 0) {
            DIR *tasks = fdopendir(tasksfd);
            struct dirent *t;
            while ((t = readdir(tasks)) != NULL) {
                if (t->d_name[0] == '.') continue;
                n = read_all(tasksfd, t->d_name);
                if (n < 0) errors++; else { bytes += n; nfiles++; }
            }
            closedir(tasks); /* closes tasksfd */
        } else {
            errors++;
        }
        close(flowfd);
    }
    closedir(flows);
    close(root);
    printf("rawread: %ld flows, %ld files, %ld bytes, %ld errors\n", nflows, nfiles, bytes, errors);
    return errors ? 1 : 0;
}
