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
 *
 *   runfloor -l DIR KEY CMD [ARG...]   (DIR also holds index/tasks/, index/owners/ and
 *                                       queues/default/{running,waiting}/)
 *
 * With -l it does the same durable work as clawflow's own layout (spool-layout.md: "Locks",
 * "Indexes", "Queues"), still with no JSON and no parsing: the spool's root locked shared;
 * the queue's directory locked and its running/ and waiting/ listed; the job's entry made in
 * running/; the task-index link; the owner-index directory of a new key made under a temp
 * name, locked and renamed into place, with the flow's link in it; all of them flushed in
 * barrier 1 with the flow's files (9 objects, as clawflow's), and tmp/ flushed with flows/
 * and owners/ in barrier 2 (3 objects, as clawflow's). The supervisor holds the entry's
 * lock, locks the flow for each record, and at the end removes the entry and lists waiting/
 * for a job to hand its slot to.
 */
#define _GNU_SOURCE
#include <sys/wait.h>
#include "floor.h"

#include <dirent.h>
#include <sys/file.h>

/* -l: the queue's running/ and waiting/ (open), the job's entry and its name. */
static int layout, queue_dir = -1, running_dir = -1, waiting_dir = -1;
static char entry_name[64];

/* Lists a directory through a fresh descriptor, as a hand-off reads a queue. */
static void list_dir(int dir) {
    int fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) floor_fail("list");
    DIR *d = fdopendir(fd);
    while (readdir(d) != NULL) {}
    closedir(d);
}

static void supervise(int flow, int tasks, char **argv) {
    pid_t pid = floor_spawn_logged(tasks, argv);
    if (layout) flock(flow, LOCK_EX);
    floor_transition(flow, tasks); /* running */
    if (layout) flock(flow, LOCK_UN);
    int status;
    while (waitpid(pid, &status, 0) < 0) {}
    if (layout) flock(flow, LOCK_EX);
    floor_transition(flow, tasks); /* succeeded or failed */
    if (layout) {
        flock(flow, LOCK_UN);
        unlinkat(running_dir, entry_name, 0); /* the slot is free: hand it on if a job waits */
        list_dir(waiting_dir);
    }
    _exit(0);
}

/* -l, before barrier 1: the locks, the queue's entry and the two index entries of a new flow
 * `id` (task `id`-t) of a new owner key; their objects go into `extra` for barrier 1. */
static int layout_prepare(int root, const char *id, const char *key, int *extra) {
    char target[128], temp[128], task[96];
    int n = 0;
    if (flock(root, LOCK_SH) != 0) floor_fail("flock root");
    queue_dir = floor_open_dir(root, "queues/default");
    if (flock(queue_dir, LOCK_EX) != 0) floor_fail("flock queue");
    running_dir = floor_open_dir(queue_dir, "running");
    waiting_dir = floor_open_dir(queue_dir, "waiting");
    list_dir(running_dir);
    list_dir(waiting_dir);
    snprintf(entry_name, sizeof entry_name, "%s", id);
    extra[n++] = openat(running_dir, entry_name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (extra[0] < 0) floor_fail("queue entry");
    int itasks = floor_open_dir(root, "index/tasks"), iowners = floor_open_dir(root, "index/owners");
    snprintf(target, sizeof target, "../../flows/%s", id);
    snprintf(task, sizeof task, "%s-t", id);
    if (symlinkat(target, itasks, task) != 0) floor_fail("task index");
    snprintf(temp, sizeof temp, ".%s.tmp", key);
    if (mkdirat(iowners, temp, 0700) != 0) floor_fail("owner index");
    int owner = floor_open_dir(iowners, temp); /* its lock is the change's: closed in barrier 1 */
    if (flock(owner, LOCK_EX) != 0) floor_fail("flock owner");
    if (renameat2(iowners, temp, iowners, key, RENAME_NOREPLACE) != 0) floor_fail("owner index rename");
    snprintf(target, sizeof target, "../../../flows/%s", id);
    if (symlinkat(target, owner, id) != 0) floor_fail("owner index entry");
    extra[n++] = itasks;
    extra[n++] = iowners;
    extra[n++] = owner;
    return n;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-l") == 0) {
        layout = 1;
        argv++;
        argc--;
    }
    if (argc < 4) { fprintf(stderr, "usage: runfloor [-l] DIR KEY CMD [ARG...]\n"); return 2; }
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
    int extra[8], n_extra = layout ? layout_prepare(root, id, argv[2], extra) : 0;
    floor_flush_tmp = layout;
    floor_new_flow(tmp, flows, owners, id, argv[2], first_link, extra, n_extra, &dir, &tasks, &visible);
    if (layout) {
        flock(extra[0], LOCK_EX | LOCK_NB); /* the supervisor's hold on its entry, inherited */
        for (int k = 1; k < n_extra; k++) close(extra[k]); /* the owner's lock with them */
        close(queue_dir); /* the locks are let go: the supervisor must not inherit them */
        flock(root, LOCK_UN);
    }

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
