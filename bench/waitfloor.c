/*
 * waitfloor: the least `clawflow wait FLOW` has to do, in C with no clawflow code, for
 * bench/queue-vs-tsp.sh: sleep on inotify until the flow's manifest says it has ended, then
 * exit. Watches are added before the first read, as wait's are, so no change is missed.
 *
 *   waitfloor FLOWDIR     (a flow directory of a spool: FLOWDIR/manifest.json)
 *
 * "Ended" is what the manifest's pretty-printed "status" line says: succeeded, failed,
 * cancelled, timed_out or lost. No JSON parser, no locks, no liveness check of the
 * supervisor, no hand-off: only the wake-up and one read per change.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <unistd.h>

static int ended(int dir) {
    char buf[8192];
    int fd = openat(dir, "manifest.json", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    const char *done[] = {"\"status\": \"succeeded\"", "\"status\": \"failed\"", "\"status\": \"cancelled\"",
                          "\"status\": \"timed_out\"", "\"status\": \"lost\""};
    for (unsigned i = 0; i < sizeof done / sizeof done[0]; i++)
        if (strstr(buf, done[i]) != NULL) return 1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: waitfloor FLOWDIR\n"); return 2; }
    int in = inotify_init1(IN_CLOEXEC);
    if (in < 0 || inotify_add_watch(in, argv[1], IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE) < 0) { perror(argv[1]); return 1; }
    /* The instance's last close waits for a kernel grace period (13-19 ms here), also at exit:
     * a keeper holds a copy until this process has exited, as clawflow's wait does. */
    pid_t parent = getpid();
    if (fork() == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(0);
        for (;;) pause();
    }
    int dir = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) { perror(argv[1]); return 1; }
    char events[4096];
    while (!ended(dir)) {
        if (read(in, events, sizeof events) < 0) { perror("inotify"); return 1; }
    }
    return 0;
}
