/* bench/hookfloor.c DIR STAMP: the baseline of bench/hooklat.sh, the least a reaction to a
 * record's change can cost without any durability: inotify on DIR (a flow's tasks/), and for
 * each name renamed into it (not a dot-file), fork + exec of STAMP with the name, as a hook
 * would be started. Runs until killed. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: hookfloor DIR STAMP\n");
        return 64;
    }
    signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
    int fd = inotify_init1(IN_CLOEXEC);
    if (fd < 0 || inotify_add_watch(fd, argv[1], IN_MOVED_TO) < 0) {
        perror("inotify");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    char buf[64 * (sizeof(struct inotify_event) + NAME_MAX + 1)];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) return 1;
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *e = (struct inotify_event *)p;
            if (e->len > 0 && e->name[0] != '.') {
                char name[NAME_MAX + 1];
                snprintf(name, sizeof name, "%s", e->name);
                char *dot = strrchr(name, '.');
                if (dot != NULL) *dot = '\0';
                if (fork() == 0) {
                    execl(argv[2], argv[2], name, (char *)NULL);
                    _exit(127);
                }
            }
            p += sizeof(struct inotify_event) + e->len;
        }
    }
}
