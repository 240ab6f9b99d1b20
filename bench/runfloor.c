/*
 * runfloor: the least durable work `clawflow run -- CMD` has to do, written in C with no
 * clawflow code, for bench/run-vs-nq.sh. It bounds from below what any implementation of
 * spec §4 and §6 pays on this disk, the way bench/layoutfloor.c does for a drop.
 *
 *   runfloor DIR KEY CMD [ARG...]    (DIR holds tmp/, flows/ and owners/; run.sh makes them)
 *
 * What it does, in the order `run` must (each step durable before the next is relied on):
 *   1. a staging directory in DIR/tmp with tasks/, the task file, manifest.json and
 *      events.jsonl (350 bytes each) and an owner-link intent in owners/; all fsynced at
 *      once, one thread each (barrier 1); the rename into flows/ and of the owner link;
 *      flows/ and owners/ fsynced together (barrier 2) — 6 new inodes, two flush rounds;
 *   2. prints the flow id, forks a supervisor in a session of its own and returns;
 *   3. the supervisor opens the task's log, spawns CMD in a process group of its own with its
 *      output there, records the task running (task file and manifest replaced by temp file
 *      + rename, an event appended, all fsynced at once with the flow's two directories),
 *      waits for CMD and records its end the same way.
 * No indexes, no JSON, no parsing, no locks: only the files and the flushes.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static char bytes[350];

static void fail(const char *what) {
    perror(what);
    exit(1);
}

static void *sync_one(void *fd) {
    fsync((int)(long)fd);
    return NULL;
}

/* fsync every descriptor at once, one thread each. */
static void barrier(const int *fds, int n) {
    pthread_t t[16];
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, sync_one, (void *)(long)fds[i]);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
}

static int new_file(int dir, const char *name) {
    int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, bytes, sizeof bytes) != (ssize_t)sizeof bytes) fail(name);
    return fd;
}

static int open_dir(int at, const char *name) {
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail(name);
    return fd;
}

/* One task transition: the task file and the manifest replaced, an event appended. */
static void transition(int flow, int tasks) {
    int fds[5], n = 0;
    fds[n++] = new_file(tasks, ".task.json.tmp");
    fds[n++] = new_file(flow, ".manifest.json.tmp");
    int events = openat(flow, "events.jsonl", O_WRONLY | O_APPEND | O_CLOEXEC);
    if (events < 0 || write(events, bytes, 200) != 200) fail("events.jsonl");
    fds[n++] = events;
    barrier(fds, n);
    if (renameat(tasks, ".task.json.tmp", tasks, "task.json") != 0) fail("rename task");
    if (renameat(flow, ".manifest.json.tmp", flow, "manifest.json") != 0) fail("rename manifest");
    int dirs[2] = {tasks, flow};
    barrier(dirs, 2);
    for (int k = 0; k < n; k++) close(fds[k]);
}

static void supervise(int flow, int tasks, char **argv) {
    int log = openat(tasks, "task.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log < 0) fail("task.log");
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
    if (posix_spawnp(&pid, argv[0], &actions, &attr, argv, environ) != 0) fail(argv[0]);
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
    char id[64], staging[80], target[96], intent[112];
    snprintf(id, sizeof id, "%lld-%09ld-%d", (long long)t.tv_sec, t.tv_nsec, (int)getpid());
    snprintf(staging, sizeof staging, "%s.staging", id);
    snprintf(target, sizeof target, "../flows/%s", id);
    snprintf(intent, sizeof intent, ".%s.next", argv[2]);
    int root = open_dir(AT_FDCWD, argv[1]);
    int tmp = open_dir(root, "tmp"), flows = open_dir(root, "flows"), owners = open_dir(root, "owners");

    if (mkdirat(tmp, staging, 0700) != 0) fail(staging);
    int dir = open_dir(tmp, staging);
    if (mkdirat(dir, "tasks", 0700) != 0) fail("tasks");
    int tasks = open_dir(dir, "tasks");
    int fds[8], n = 0;
    fds[n++] = new_file(tasks, "task.json");
    fds[n++] = new_file(dir, "manifest.json");
    fds[n++] = new_file(dir, "events.jsonl");
    fds[n++] = tasks;
    fds[n++] = dir;
    if (symlinkat(target, owners, intent) != 0) fail(intent);
    fds[n++] = owners;
    barrier(fds, n);
    if (renameat2(tmp, staging, flows, id, RENAME_NOREPLACE) != 0) fail("rename flow");
    if (renameat(owners, intent, owners, argv[2]) != 0) fail("rename owner link");
    int second[2] = {flows, owners};
    barrier(second, 2);
    for (int k = 0; k < 3; k++) close(fds[k]);

    printf("%s\n", id);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) fail("fork");
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
