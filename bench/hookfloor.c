/* bench/hookfloor.c DIR STAMP|-: the observer and the baseline of bench/hooklat.sh. Watches DIR
 * (a flow's tasks/) with inotify; for each name renamed into it (not a dot-file) it appends
 * "<name>@obs <CLOCK_REALTIME ns>" to $STAMP_OUT, read the moment the event arrives (the
 * write's moment, to the precision of an inotify wake-up: file times come from the kernel's
 * coarse clock, a tick of up to 4 ms), and, unless STAMP is "-", forks and execs STAMP with
 * the name, as a hook would be started: the least a reaction can cost, with nothing made
 * durable. Runs until killed. */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: hookfloor DIR STAMP|-\n");
        return 64;
    }
    const char *out = getenv("STAMP_OUT");
    if (out == NULL) return 64;
    signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
    int fd = inotify_init1(IN_CLOEXEC);
    if (fd < 0 || inotify_add_watch(fd, argv[1], IN_MOVED_TO) < 0) {
        perror("hookfloor");
        return 1;
    }
    int spawn = strcmp(argv[2], "-") != 0;
    printf("ready\n");
    fflush(stdout);
    char buf[64 * (sizeof(struct inotify_event) + NAME_MAX + 1)];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) return 1;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *e = (struct inotify_event *)p;
            if (e->len > 0 && e->name[0] != '.') {
                char name[NAME_MAX + 1];
                snprintf(name, sizeof name, "%s", e->name);
                char *dot = strrchr(name, '.');
                if (dot != NULL) *dot = '\0';
                char line[NAME_MAX + 64];
                int len = snprintf(line, sizeof line, "%s@obs %lld\n", name, (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
                int log = open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
                if (log < 0 || write(log, line, (size_t)len) != len) return 1;
                close(log);
                if (spawn && fork() == 0) {
                    execl(argv[2], argv[2], name, (char *)NULL);
                    _exit(127);
                }
            }
            p += sizeof(struct inotify_event) + e->len;
        }
    }
}
