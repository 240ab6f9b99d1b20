/*
 * runfloor: the least durable work `clawflow run -- CMD` has to do, written in C with no
 * clawflow code, for bench/run-vs-nq.sh. It bounds from below what any implementation of
 * spec §4 and §6 pays on this disk, the way bench/layoutfloor.c does for a drop.
 *
 *   runfloor DIR KEY CMD [ARG...]    (DIR holds tmp/, flows/ and owners/; run.sh makes them)
 *
 * What it does, in the order `run` must (each step durable before the next is relied on):
 *   1. a staging directory in DIR/tmp with tasks/, the task file, manifest.json and
 *      events.jsonl (350 bytes each), all fsynced at once from helper threads (barrier 1); the
 *      rename into flows/, then the owner link (a key's first link made in place, a later
 *      one through an intent flushed in barrier 1); flows/ and owners/ fsynced together
 *      (barrier 2) — 5 new inodes for a new key, two flush rounds;
 *   2. prints the flow id, forks a supervisor in a session of its own and returns;
 *   3. the supervisor opens the task's log, spawns CMD in a process group of its own with its
 *      output there, records the task running (task file and manifest replaced by temp file
 *      + rename, an event appended, all fsynced at once with the flow's two directories),
 *      waits for CMD and records its end the same way.
 * No indexes, no JSON, no parsing, no locks: only the files and the flushes.
 */
#define _GNU_SOURCE
#include <sys/wait.h>
#include "floor.h"

static void supervise(int flow, int tasks, char **argv) {
    pid_t pid = floor_spawn_logged(tasks, argv);
    floor_transition(flow, tasks); /* running */
    int status;
    while (waitpid(pid, &status, 0) < 0) {}
    floor_transition(flow, tasks); /* succeeded or failed */
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: runfloor DIR KEY CMD [ARG...]\n"); return 2; }
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    char id[64];
    snprintf(id, sizeof id, "%lld-%09ld-%d", (long long)t.tv_sec, t.tv_nsec, (int)getpid());
    int root = floor_open_dir(AT_FDCWD, argv[1]);
    int tmp = floor_open_dir(root, "tmp"), flows = floor_open_dir(root, "flows"), owners = floor_open_dir(root, "owners");
    int dir, tasks;
    double visible;
    char text[256];
    int first_link = readlinkat(owners, argv[2], text, sizeof text) < 0; /* the key has no link yet */
    floor_new_flow(tmp, flows, owners, id, argv[2], first_link, NULL, 0, &dir, &tasks, &visible);

    printf("%s\n", id);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) floor_fail("fork");
    if (pid == 0) {
        setsid();
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        supervise(dir, tasks, argv + 3);
    }
    return 0;
}
