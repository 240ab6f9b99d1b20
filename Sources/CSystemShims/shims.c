#define _GNU_SOURCE
#include "CSystemShims.h"
#include <dirent.h>
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

void *clawflow_fdopendir(int fd) {
    /* A dup shares the file offset with the original: start from the top every time. */
    DIR *dir = fdopendir(fd);
    if (dir != NULL) rewinddir(dir);
    return dir;
}

int clawflow_closedir(void *dir) { return closedir((DIR *)dir); }

int clawflow_readdir(void *dir, const char **name, unsigned char *type) {
    errno = 0;
    struct dirent *entry = readdir((DIR *)dir);
    if (entry == NULL) {
        return errno == 0 ? 0 : -1;
    }
    *name = entry->d_name;
    *type = entry->d_type;
    return 1;
}

#include <sys/file.h>
int clawflow_flock(int fd, int operation) { return flock(fd, operation); }
