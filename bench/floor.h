/*
 * floor.h: the pieces the C benchmarks share (droplat.c, layoutfloor.c, runfloor.c): a
 * clock, a sort order, and the spool layout's durable writes in plain C, without clawflow.
 * Each program is one file plus this header (`cc -O2 -pthread prog.c`); define _GNU_SOURCE
 * before including it.
 */
#ifndef CLAWFLOW_BENCH_FLOOR_H
#define CLAWFLOW_BENCH_FLOOR_H

#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* CLOCK_MONOTONIC in seconds. */
static inline double floor_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* qsort order of doubles, ascending. */
static inline int floor_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static inline void floor_fail(const char *what) {
    perror(what);
    exit(1);
}

/*
 * fsync every descriptor at once: the caller takes the first, and up to 15 helper threads,
 * started once and kept, take the rest (as clawflow's FlushSet does; starting a thread per
 * fsync would add its own cost to every barrier).
 */
#define FLOOR_HELPERS 15
static pthread_mutex_t floor_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t floor_work = PTHREAD_COND_INITIALIZER, floor_done = PTHREAD_COND_INITIALIZER;
static const int *floor_fds;
static int floor_next, floor_count, floor_pending, floor_started;

static inline void *floor_helper(void *unused) {
    (void)unused;
    pthread_mutex_lock(&floor_mu);
    for (;;) {
        while (floor_next >= floor_count) pthread_cond_wait(&floor_work, &floor_mu);
        int fd = floor_fds[floor_next++];
        pthread_mutex_unlock(&floor_mu);
        fsync(fd);
        pthread_mutex_lock(&floor_mu);
        if (--floor_pending == 0) pthread_cond_broadcast(&floor_done);
    }
    return NULL;
}

/* A forked child has none of the helpers (runfloor's supervisor flushes too). */
static inline void floor_after_fork(void) {
    pthread_mutex_init(&floor_mu, NULL);
    pthread_cond_init(&floor_work, NULL);
    pthread_cond_init(&floor_done, NULL);
    floor_started = floor_next = floor_count = floor_pending = 0;
}

static inline void floor_barrier(const int *fds, int n) {
    static int registered;
    if (n <= 0) return;
    if (!registered) {
        pthread_atfork(NULL, NULL, floor_after_fork);
        registered = 1;
    }
    pthread_mutex_lock(&floor_mu);
    while (floor_started < FLOOR_HELPERS && floor_started < n - 1) {
        pthread_t t;
        if (pthread_create(&t, NULL, floor_helper, NULL) != 0) floor_fail("pthread_create");
        pthread_detach(t);
        floor_started++;
    }
    floor_fds = fds;
    floor_next = 1;
    floor_count = n;
    floor_pending = n - 1;
    pthread_cond_broadcast(&floor_work);
    pthread_mutex_unlock(&floor_mu);
    fsync(fds[0]);
    pthread_mutex_lock(&floor_mu);
    while (floor_pending > 0) pthread_cond_wait(&floor_done, &floor_mu);
    floor_count = 0;
    floor_next = 0;
    pthread_mutex_unlock(&floor_mu);
}

/* A new file `name` in `dir` holding a 350-byte record; returns it open (not flushed). */
static inline int floor_new_file(int dir, const char *name) {
    static char record[350];
    if (record[0] == 0) memset(record, 'x', sizeof record);
    int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, record, sizeof record) != (ssize_t)sizeof record) floor_fail(name);
    return fd;
}

static inline int floor_open_dir(int at, const char *name) {
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) floor_fail(name);
    return fd;
}

/*
 * The least a new one-task flow needs by spec §4: a staging directory in `tmp` with tasks/,
 * the task file, manifest.json and events.jsonl; all of it fsynced at once together with the
 * `extra` descriptors (barrier 1); the rename of the staging directory to flows/<id>, then the
 * owner link (then *visible is set: the flow can be found); flows/ and owners/ fsynced
 * together (barrier 2). The owner link: a key's first link is created in place after the
 * rename (`first_link`), as clawflow does; a later one is written as an intent
 * owners/.<link>.next in barrier 1 and renamed over the link. So 5 new inodes (6 with an
 * intent), two rounds of flushes. Returns the flow's directory in *dir and its tasks/ in
 * *tasks, open.
 */
/* Whether barrier 2 of floor_new_flow also flushes tmp/, which the rename changed too (as
 * clawflow's layout does; runfloor -l sets it). */
static int floor_flush_tmp;

static inline void floor_new_flow(int tmp, int flows, int owners, const char *id, const char *link, int first_link,
                           const int *extra, int n_extra, int *dir, int *tasks, double *visible) {
    char staging[256], target[256], intent[256];
    snprintf(staging, sizeof staging, "%s.staging", id);
    snprintf(target, sizeof target, "../flows/%s", id);
    snprintf(intent, sizeof intent, ".%s.next", link);
    if (mkdirat(tmp, staging, 0700) != 0) floor_fail(staging);
    *dir = floor_open_dir(tmp, staging);
    if (mkdirat(*dir, "tasks", 0700) != 0) floor_fail("tasks");
    *tasks = floor_open_dir(*dir, "tasks");
    int fds[20], n = 0;
    fds[n++] = floor_new_file(*tasks, "task.json");
    fds[n++] = floor_new_file(*dir, "manifest.json");
    fds[n++] = floor_new_file(*dir, "events.jsonl");
    fds[n++] = *tasks;
    fds[n++] = *dir;
    if (!first_link) {
        if (symlinkat(target, owners, intent) != 0) floor_fail(intent);
        fds[n++] = owners;
    }
    for (int k = 0; k < n_extra && n < (int)(sizeof fds / sizeof *fds); k++) fds[n++] = extra[k];
    floor_barrier(fds, n);
    if (renameat2(tmp, staging, flows, id, RENAME_NOREPLACE) != 0) floor_fail("rename flow");
    if (first_link ? symlinkat(target, owners, link) != 0 : renameat(owners, intent, owners, link) != 0)
        floor_fail("owner link");
    *visible = floor_now();
    int second[3] = {flows, owners, tmp};
    floor_barrier(second, floor_flush_tmp ? 3 : 2);
    for (int k = 0; k < 3; k++) close(fds[k]);
}

/* One task transition: the task file and the manifest replaced by temp file + rename, a
 * 200-byte event appended, the three files flushed at once, then the two directories. */
static inline void floor_transition(int flow, int tasks) {
    static char event[200];
    if (event[0] == 0) memset(event, 'x', sizeof event);
    int fds[3], n = 0;
    fds[n++] = floor_new_file(tasks, ".task.json.tmp");
    fds[n++] = floor_new_file(flow, ".manifest.json.tmp");
    int events = openat(flow, "events.jsonl", O_WRONLY | O_APPEND | O_CLOEXEC);
    if (events < 0 || write(events, event, sizeof event) != (ssize_t)sizeof event) floor_fail("events.jsonl");
    fds[n++] = events;
    floor_barrier(fds, n);
    if (renameat(tasks, ".task.json.tmp", tasks, "task.json") != 0) floor_fail("rename task");
    if (renameat(flow, ".manifest.json.tmp", flow, "manifest.json") != 0) floor_fail("rename manifest");
    int dirs[2] = {tasks, flow};
    floor_barrier(dirs, 2);
    for (int k = 0; k < n; k++) close(fds[k]);
}

/* A command started as a supervisor starts it: in a process group of its own, stdin from
 * /dev/null, stdout and stderr appended to tasks/task.log. Its pid. */
static inline pid_t floor_spawn_logged(int tasks, char **argv) {
    extern char **environ;
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
    close(log);
    return pid;
}

/* A spool's directories for the models below, made under `dir` (which must not exist). */
struct floor_spool {
    int tmp, flows, owners, itasks, iruns, iowners, applied;
};

static inline void floor_spool_make(struct floor_spool *sp, const char *dir) {
    if (mkdir(dir, 0700) != 0) floor_fail(dir);
    int root = floor_open_dir(AT_FDCWD, dir);
    const char *dirs[] = {"tmp", "flows", "owners", "index", "index/tasks", "index/runs", "index/owners", "applied"};
    for (int k = 0; k < 8; k++)
        if (mkdirat(root, dirs[k], 0700) != 0) floor_fail(dirs[k]);
    sp->tmp = floor_open_dir(root, "tmp");
    sp->flows = floor_open_dir(root, "flows");
    sp->owners = floor_open_dir(root, "owners");
    sp->itasks = floor_open_dir(root, "index/tasks");
    sp->iruns = floor_open_dir(root, "index/runs");
    sp->iowners = floor_open_dir(root, "index/owners");
    sp->applied = floor_open_dir(root, "applied");
    close(root);
}

/*
 * A new one-task flow `id` of a new owner key: with `indexed`, as clawflow writes it for a
 * drop (spool-layout.md, "Writing", "Indexes", "Drop box"): the task-index entry, the
 * run-index and owner-index directories of a new run id and owner key with their entries,
 * and the drop's applied record, all flushed in barrier 1 — 13 fsyncs in two rounds; without,
 * the spec's least (7 fsyncs). Sets *visible when the owner link appears.
 */
static inline void floor_model_flow(const struct floor_spool *sp, const char *id, int indexed, double *visible) {
    char target[96], link[96];
    snprintf(target, sizeof target, "../flows/%s", id);
    snprintf(link, sizeof link, "owner-%s", id);
    int extra[6], n = 0, ownerdir = -1, rundir = -1, dir, tasks;
    if (indexed) {
        symlinkat(target, sp->itasks, id);
        mkdirat(sp->iruns, link, 0700);
        rundir = floor_open_dir(sp->iruns, link);
        symlinkat(target, rundir, id);
        mkdirat(sp->iowners, link, 0700);
        ownerdir = floor_open_dir(sp->iowners, link);
        symlinkat(target, ownerdir, id);
        symlinkat(target, sp->applied, id);
        extra[n++] = sp->itasks;
        extra[n++] = sp->iruns;
        extra[n++] = rundir;
        extra[n++] = sp->iowners;
        extra[n++] = ownerdir;
        extra[n++] = sp->applied;
    }
    floor_new_flow(sp->tmp, sp->flows, sp->owners, id, link, 1, extra, n, &dir, &tasks, visible);
    close(tasks);
    close(dir);
    if (ownerdir >= 0) close(ownerdir);
    if (rundir >= 0) close(rundir);
}

#endif
