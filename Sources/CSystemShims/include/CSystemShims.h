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
/// The d_type of a dirent as an int (DT_DIR, DT_REG, DT_LNK, ...), or DT_UNKNOWN.
/// readdir(3) wrapper that returns the name and type of the next entry; returns 0 at end,
/// 1 with an entry, -1 on error (errno set).
int clawflow_readdir(void *dir, const char **name, unsigned char *type);
/// fdopendir(3), rewound to the first entry, as an opaque DIR*.
void *clawflow_fdopendir(int fd);
/// closedir(3).
int clawflow_closedir(void *dir);

/// flock(2), whose name Swift also gives to a struct.
int clawflow_flock(int fd, int operation);

#endif
