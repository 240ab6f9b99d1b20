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
#include <spawn.h>
#include <sys/wait.h>
#include "floor.h"

extern char **environ;

static char bytes[350];

/* One task transition: the task file and the manifest replaced, an event appended. */
static void transition(int flow, int tasks) {
    int fds[5], n = 0;
    fds[n++] = floor_new_file(tasks, ".task.json.tmp");
    fds[n++] = floor_new_file(flow, ".manifest.json.tmp");
    int events = openat(flow, "events.jsonl", O_WRONLY | O_APPEND | O_CLOEXEC);
    if (events < 0 || write(events, bytes, 200) != 200) floor_fail("events.jsonl");
    fds[n++] = events;
    floor_barrier(fds, n);
    if (renameat(tasks, ".task.json.tmp", tasks, "task.json") != 0) floor_fail("rename task");
    if (renameat(flow, ".manifest.json.tmp", flow, "manifest.json") != 0) floor_fail("rename manifest");
    int dirs[2] = {tasks, flow};
    floor_barrier(dirs, 2);
    for (int k = 0; k < n; k++) close(fds[k]);
}

static void supervise(int flow, int tasks, char **argv) {
    int log = openat(tasks, "task.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log < 0) floor_fail("task.log");
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, log, 1);
    posix_spawn_file_actions_adddup2(&actions, log, 2);
    pid_t pid;
    if (posix_spawnp(&pid, argv[0], &actions, &attr, argv, environ) != 0) floor_fail(argv[0]);
    transition(flow, tasks); /* running */
    int status;
    while (waitpid(pid, &status, 0) < 0) {}
    transition(flow, tasks); /* succeeded or failed */
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: runfloor DIR KEY CMD [ARG...]\n"); return 2; }
    memset(bytes, 'x', sizeof bytes);
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
