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

/// fsync(2) of every descriptor in fds, run by the caller and three helper threads (started
/// on first use, kept, signals blocked) so the device sees the flushes together; for entries
/// with is_file[i] != 0 the data writeback is started first with sync_file_range(2).
/// errors[i] is 0 or the errno of fds[i]. Returns when every fsync has returned.
void clawflow_fsync_all(const int *fds, const int *is_file, int *errors, int count);

#endif
