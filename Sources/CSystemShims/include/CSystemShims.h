#ifndef CLAWFLOW_CSYSTEMSHIMS_H
#define CLAWFLOW_CSYSTEMSHIMS_H

#include <sys/types.h>

/// renameat2(2), hidden from Swift's Glibc module without _GNU_SOURCE.
int clawflow_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
/// The RENAME_NOREPLACE flag value.
unsigned int clawflow_rename_noreplace(void);
/// The RENAME_EXCHANGE flag value.
unsigned int clawflow_rename_exchange(void);
/// syncfs(2).
int clawflow_syncfs(int fd);
/// getdents64(2): reads directory entries (struct linux_dirent64) from fd into buf.
long clawflow_getdents64(int fd, void *buf, unsigned long count);

/// The f_type of statfs(2) for path (the filesystem's magic number); -1 on error (errno set).
long clawflow_filesystem_magic(const char *path);

/// flock(2), whose name Swift also gives to a struct.
int clawflow_flock(int fd, int operation);

#endif
