#define _GNU_SOURCE
#include "CSystemShims.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int clawflow_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}

unsigned int clawflow_rename_noreplace(void) { return RENAME_NOREPLACE; }
unsigned int clawflow_rename_exchange(void) { return RENAME_EXCHANGE; }

int clawflow_syncfs(int fd) { return syncfs(fd); }

#include <sys/file.h>
int clawflow_flock(int fd, int operation) { return flock(fd, operation); }

#include <sys/syscall.h>
long clawflow_getdents64(int fd, void *buf, unsigned long count) { return syscall(SYS_getdents64, fd, buf, count); }

#include <sys/vfs.h>
long clawflow_filesystem_magic(const char *path) {
    struct statfs buf;
    if (statfs(path, &buf) != 0) return -1;
    return (long)buf.f_type;
}
