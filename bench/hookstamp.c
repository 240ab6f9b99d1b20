/* bench/hookstamp.c: the hook of bench/hooklat.sh. Appends "<name> <CLOCK_REALTIME ns>\n" to
 * $STAMP_OUT as its first act, <name> being $CLAWFLOW_TASK_ID (as clawflow runs it) or argv[1]
 * (as bench/hookfloor.c runs it). One write(2) with O_APPEND, so concurrent runs do not mix. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    const char *out = getenv("STAMP_OUT");
    const char *name = argc > 1 ? argv[1] : getenv("CLAWFLOW_TASK_ID");
    if (out == NULL || name == NULL) return 2;
    char line[256];
    int n = snprintf(line, sizeof line, "%s %lld\n", name, (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
    int fd = open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || n <= 0 || write(fd, line, (size_t)n) != n) return 1;
    close(fd);
    return 0;
}
