/* The syscalls Swift's Glibc module hides without _GNU_SOURCE, or misnames. */
#define _GNU_SOURCE
#include "CSystemShims.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <signal.h>
#include <unistd.h>

int clawflow_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}

unsigned int clawflow_rename_noreplace(void) { return RENAME_NOREPLACE; }

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

long clawflow_fd_filesystem_magic(int fd) {
    struct statfs buf;
    if (fstatfs(fd, &buf) != 0) return -1;
    return (long)buf.f_type;
}


#include <sys/syscall.h>
#include <sys/prctl.h>
int clawflow_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int clawflow_become_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
/* The keeper: dies with its parent (PR_SET_PDEATHSIG, checked once more after it is set, in
 * case the parent died first), keeps only `fd`, and sleeps. Async-signal-safe after fork. */
pid_t clawflow_park_descriptor(int fd) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) return pid;
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) _exit(0);
    sigset_t all;
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    if (fd > 0) (void)syscall(SYS_close_range, 0, fd - 1, 0);
    (void)syscall(SYS_close_range, fd + 1, ~0U, 0);
    for (;;) pause();
}
