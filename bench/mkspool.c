/*
 * mkspool: writes a clawflow spool (spool-layout.md, version 1) straight to disk, without
 * fsync, for the benchmark. Building 100,000 flows through the CLI takes minutes because
 * every creation is durable; this writes the same files in seconds.
 *
 *   mkspool DIR NFLOWS mirrored        one task per flow, syncMode task_mirrored
 *   mkspool DIR NFLOWS managed TASKS   TASKS tasks per flow, syncMode managed, controllerId "bench"
 *   mkspool DIR NFLOWS managed TASKS running
 *                                      the same, but every flow has the "running" shape (non-terminal;
 *                                      for the watcher benchmark, bench/watch.sh)
 *
 * DIR must not exist (or be empty). What is written, per flow i (0-based):
 *   flows/<flowId>/manifest.json, flows/<flowId>/tasks/<taskId>.json, flows/<flowId>/events.jsonl,
 *   index/tasks/<taskId> -> ../../flows/<flowId>,
 *   index/owners/<name>/<flowId> -> ../../../flows/<flowId>,
 * the empty run index (index/runs/ with its .complete file: no task here has a run id),
 * and, after all flows, owners/<name> -> ../flows/<pick> for every owner, where the pick is
 * the owner's newest non-terminal flow, else its newest flow, and the empty incoming/tmp,
 * incoming/new, incoming/claimed, incoming/applied, rejected, tmp and run directories.
 *
 * Owners: flow i belongs to owner-<g> with g = i - i % 100 when i % 100 is 1, 2 or 3, else
 * g = i; so owners owner-0, owner-100, ... have four flows each and every other owner one.
 * Statuses cycle with i % 10 (so owner-0 and owner-50000 have flows of the same shapes).
 * Flow i is created at BASE + 10*i ms (BASE = now - 10*NFLOWS ms - 1 h), so UUIDv7 ids are
 * time-ordered and no two flows share a millisecond; a flow's tasks are created 1, 2, 3 ms
 * after it (a mirrored flow's task in the same millisecond, as clawflow does). Records are
 * pretty JSON with sorted keys, two-space indent and a final newline; files 0600,
 * directories 0700. Terminal flows and tasks carry endedAt; events.jsonl tells the same
 * history (created, linked, task and flow status changes, cancels) as the records.
 *
 * Spools of 2,000 flows or more are written by two processes, each on a range of whole owner
 * groups (the work is nearly all kernel time, and the machine has two cores).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TS 80 /* room for any timestamp text */

static void die(const char *what, const char *name) {
    fprintf(stderr, "mkspool: %s %s: %s\n", what, name ? name : "", strerror(errno));
    exit(1);
}

/* ---- small helpers ---------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* A lowercase UUIDv7 (RFC 9562 5.7): 48-bit ms timestamp, version 7, variant 10xx. */
static void uuid7(int64_t ms, char out[37]) {
    unsigned char b[16];
    for (int i = 0; i < 6; i++) b[i] = (unsigned char)((uint64_t)ms >> (8 * (5 - i)));
    uint64_t r1 = rnd(), r2 = rnd();
    for (int i = 0; i < 5; i++) b[6 + i] = (unsigned char)(r1 >> (8 * i));
    for (int i = 0; i < 5; i++) b[11 + i] = (unsigned char)(r2 >> (8 * i));
    b[6] = 0x70 | (b[6] & 0x0F);
    b[8] = 0x80 | (b[8] & 0x3F);
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = 0;
}

/* ISO-8601 UTC with milliseconds: 2026-11-24T09:15:02.123Z */
static void iso(int64_t ms, char out[TS]) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, TS, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* A growable text buffer. */
typedef struct { char *p; size_t n, cap; } buf;
static void bput(buf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->p + b->n, room, fmt, ap);
        va_end(ap);
        if (k < 0) die("formatting", NULL);
        if ((size_t)k < room) { b->n += (size_t)k; return; }
        b->cap = b->cap * 2 + (size_t)k + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) die("allocating", NULL);
    }
}

/* Pretty JSON object writer, keys given in sorted (byte) order by the caller. */
typedef struct { buf *b; int first; } obj;
static void obegin(obj *o, buf *b) { o->b = b; o->first = 1; b->n = 0; bput(b, "{"); }
static void okey(obj *o, const char *k) { bput(o->b, "%s\n  \"%s\": ", o->first ? "" : ",", k); o->first = 0; }
static void ostr(obj *o, const char *k, const char *v) { okey(o, k); bput(o->b, "\"%s\"", v); } /* v: no escapes needed */
static void oint(obj *o, const char *k, long v) { okey(o, k); bput(o->b, "%ld", v); }
static void onull(obj *o, const char *k) { okey(o, k); bput(o->b, "null"); }
static void oend(obj *o) { bput(o->b, "\n}\n"); }

static void write_file(int dirfd, const char *name, const buf *b) {
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) die("creating", name);
    size_t off = 0;
    while (off < b->n) {
        ssize_t w = write(fd, b->p + off, b->n - off);
        if (w < 0) { if (errno == EINTR) continue; die("writing", name); }
        off += (size_t)w;
    }
    if (close(fd) != 0) die("closing", name);
}

static void mkdir_at(int dirfd, const char *name) {
    if (mkdirat(dirfd, name, 0700) != 0 && errno != EEXIST) die("mkdir", name);
}

static void symlink_at(const char *target, int dirfd, const char *name) {
    if (symlinkat(target, dirfd, name) != 0) die("symlink", name);
}

static int open_dir(int dirfd, const char *name) {
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) die("opening", name);
    return fd;
}

/* ---- the model -------------------------------------------------------------------- */

enum { MIRRORED, MANAGED };

static const char *flow_terminal_status(const char *s, int has_ended) {
    if (!strcmp(s, "succeeded") || !strcmp(s, "failed") || !strcmp(s, "cancelled") || !strcmp(s, "lost")) return s;
    if (!strcmp(s, "blocked") && has_ended) return s;
    return NULL;
}

static int task_is_terminal(const char *s) { return strcmp(s, "queued") && strcmp(s, "running"); }

typedef struct {
    char id[37];
    const char *status;      /* final status */
    const char *initial;     /* status when linked */
    int64_t created, changed; /* ms */
    const char *outcome;     /* "blocked" or NULL */
    int cancel_requested;
    long flow_revision;      /* the flow revision the task's last write produced */
} task_t;

typedef struct {
    char id[37];
    const char *status;      /* final status */
    const char *initial;     /* status at creation */
    int64_t created, updated;
    int ended;               /* endedAt present (= updated) */
    long revision;
    const char *blocked_task;/* id of the blocking task or NULL */
    int cancel_requested;
    int64_t cancel_at;       /* when the cancel was requested (ms) */
} flow_t;

/* Mirrored: the one task's status by i % 10, and the flow's derived status. */
static const char *mirrored_task_status[10] = {
    "running", "succeeded", "succeeded", "queued", "failed", "succeeded", "running", "cancelled", "timed_out", "succeeded"};

static const char *mirror(const char *task_status) {
    if (!strcmp(task_status, "timed_out")) return "failed";
    return task_status; /* queued, running, succeeded, failed, cancelled, lost map to themselves */
}

/* Managed: the flow's status by i % 10 (or always "running" with the 5th argument). */
static int all_running = 0;
static const char *managed_flow_status[10] = {
    "running", "succeeded", "waiting", "queued", "failed", "succeeded", "running", "cancelled", "blocked", "succeeded"};

/* A managed flow's task k (of n) given the flow's status. */
static void managed_task(const char *fs, int k, int n, task_t *t) {
    t->outcome = NULL;
    t->cancel_requested = 0;
    t->initial = "queued";
    if (!strcmp(fs, "succeeded")) t->status = "succeeded";
    else if (!strcmp(fs, "failed")) t->status = k == n - 1 ? "failed" : "succeeded";
    else if (!strcmp(fs, "cancelled")) { t->status = k == 0 ? "succeeded" : "cancelled"; t->cancel_requested = k != 0; }
    else if (!strcmp(fs, "queued")) t->status = "queued";
    else if (!strcmp(fs, "running")) t->status = k == 0 ? "succeeded" : k == 1 ? "running" : "queued";
    else if (!strcmp(fs, "waiting")) t->status = k < n - 1 ? "succeeded" : "queued";
    else if (!strcmp(fs, "blocked")) { t->status = k == 0 ? "succeeded" : k == 1 ? "succeeded" : "queued"; if (k == 1) t->outcome = "blocked"; }
    else t->status = "queued";
    if (strcmp(t->status, "queued")) t->initial = "running";
}

/* ---- writers ---------------------------------------------------------------------- */

static void write_task(int tasksfd, const flow_t *f, const task_t *t, const char *owner, buf *b) {
    char ts[TS];
    obj o;
    obegin(&o, b);
    if (t->cancel_requested) { iso(f->cancel_at, ts); ostr(&o, "cancelRequestedAt", ts); }
    iso(t->created, ts); ostr(&o, "createdAt", ts);
    if (task_is_terminal(t->status)) { iso(t->changed, ts); ostr(&o, "endedAt", ts); }
    oint(&o, "flowRevision", t->flow_revision);
    ostr(&o, "label", "bench task");
    iso(task_is_terminal(t->status) || strcmp(t->status, t->initial) ? t->changed : t->created, ts);
    ostr(&o, "lastEventAt", ts);
    ostr(&o, "notifyPolicy", "done_only");
    ostr(&o, "ownerKey", owner);
    ostr(&o, "parentFlowId", f->id);
    if (!strcmp(t->status, "running")) ostr(&o, "progressSummary", "working");
    ostr(&o, "runtime", "cron");
    oint(&o, "schema", 1);
    if (strcmp(t->status, "queued") && strcmp(t->initial, "queued") == 0) { iso(t->changed, ts); ostr(&o, "startedAt", ts); }
    else if (strcmp(t->initial, "queued")) { iso(t->created, ts); ostr(&o, "startedAt", ts); }
    ostr(&o, "status", t->status);
    ostr(&o, "taskId", t->id);
    if (t->outcome) ostr(&o, "terminalOutcome", t->outcome);
    if (task_is_terminal(t->status)) ostr(&o, "terminalSummary", "done");
    oend(&o);
    char name[48];
    memcpy(name, t->id, 36);
    memcpy(name + 36, ".json", 6);
    write_file(tasksfd, name, b);
}

static void write_manifest(int flowfd, const flow_t *f, int mode, const char *owner, long i, buf *b) {
    char ts[TS];
    obj o;
    obegin(&o, b);
    if (f->blocked_task) { ostr(&o, "blockedSummary", "needs a login"); ostr(&o, "blockedTaskId", f->blocked_task); }
    if (f->cancel_requested) { iso(f->cancel_at, ts); ostr(&o, "cancelRequestedAt", ts); }
    if (mode == MANAGED) ostr(&o, "controllerId", "bench");
    iso(f->created, ts); ostr(&o, "createdAt", ts);
    if (mode == MANAGED && strcmp(f->status, "succeeded") && strcmp(f->status, "failed") && strcmp(f->status, "cancelled"))
        ostr(&o, "currentStep", "step 2");
    if (f->ended) { iso(f->updated, ts); ostr(&o, "endedAt", ts); }
    ostr(&o, "flowId", f->id);
    char goal[64];
    if (mode == MANAGED) snprintf(goal, sizeof goal, "bench job %ld", i);
    else snprintf(goal, sizeof goal, "bench task");
    ostr(&o, "goal", goal);
    ostr(&o, "notifyPolicy", "done_only");
    ostr(&o, "ownerKey", owner);
    oint(&o, "revision", f->revision);
    oint(&o, "schema", 1);
    onull(&o, "stateJson");
    ostr(&o, "status", f->status);
    ostr(&o, "syncMode", mode == MANAGED ? "managed" : "task_mirrored");
    iso(f->updated, ts); ostr(&o, "updatedAt", ts);
    onull(&o, "waitJson");
    oend(&o);
    write_file(flowfd, "manifest.json", b);
}

/* events.jsonl: compact JSON, sorted keys, one object per line. */
static void write_events(int flowfd, const flow_t *f, const task_t *tasks, int n, int mode, const char *owner, buf *b) {
    char ts[TS];
    b->n = 0;
    iso(f->created, ts);
    bput(b, "{\"at\":\"%s\",\"event\":\"created\",\"ownerKey\":\"%s\",\"source\":\"cli\",\"status\":\"%s\",\"syncMode\":\"%s\"}\n",
         ts, owner, f->initial, mode == MANAGED ? "managed" : "task_mirrored");
    for (int k = 0; k < n; k++) {
        iso(tasks[k].created, ts);
        bput(b, "{\"at\":\"%s\",\"event\":\"linked\",\"runtime\":\"cron\",\"source\":\"cli\",\"status\":\"%s\",\"taskId\":\"%s\"}\n",
             ts, tasks[k].initial, tasks[k].id);
    }
    /* A cancel request (one write: the tasks it asks to stop, then the flow), in time order. */
    if (f->cancel_requested) {
        iso(f->cancel_at, ts);
        for (int k = 0; k < n; k++)
            if (tasks[k].cancel_requested)
                bput(b, "{\"at\":\"%s\",\"event\":\"cancel\",\"source\":\"cli\",\"taskId\":\"%s\"}\n", ts, tasks[k].id);
        bput(b, "{\"at\":\"%s\",\"event\":\"cancel\",\"source\":\"cli\"}\n", ts);
    }
    for (int k = 0; k < n; k++) {
        if (!strcmp(tasks[k].status, tasks[k].initial)) continue;
        iso(tasks[k].changed, ts);
        bput(b, "{\"at\":\"%s\",\"event\":\"status\",\"from\":\"%s\",\"source\":\"cli\",\"taskId\":\"%s\",\"to\":\"%s\"}\n",
             ts, tasks[k].initial, tasks[k].id, tasks[k].status);
    }
    if (strcmp(f->status, f->initial)) {
        iso(f->updated, ts);
        bput(b, "{\"at\":\"%s\",\"event\":\"status\",\"from\":\"%s\",\"revision\":%ld,\"source\":\"cli\",\"to\":\"%s\"}\n",
             ts, f->initial, f->revision, f->status);
    }
    write_file(flowfd, "events.jsonl", b);
}

/* The spool's directories, open once per process. */
static int rootfd, flowsfd, ownersfd, ownerixfd, taskixfd;

/* Builds flows [lo, hi) and the owner links of the owner groups that start in it (owner
 * groups never straddle a multiple of 100, and lo/hi are multiples of 100 or nflows). */
static void build_range(long lo, long hi, int mode, int ntasks, int64_t base) {
    /* Per owner group g (indexed by the flow number that starts it): the pick so far. */
    char (*pick_any)[37] = calloc((size_t)(hi - lo), 37);
    char (*pick_live)[37] = calloc((size_t)(hi - lo), 37);
    if (!pick_any || !pick_live) die("allocating", NULL);
    buf b = {malloc(4096), 0, 4096};
    task_t tasks[64];
    char owner[64], target[128], path[160];

    for (long i = lo; i < hi; i++) {
        long g = (i % 100 >= 1 && i % 100 <= 3) ? i - i % 100 : i;
        snprintf(owner, sizeof owner, "owner-%ld", g); /* plain name: no %XX escapes needed */
        flow_t f;
        memset(&f, 0, sizeof f);
        f.created = base + 10 * (int64_t)i;
        uuid7(f.created, f.id);

        if (mode == MIRRORED) {
            task_t *t = &tasks[0];
            t->status = mirrored_task_status[i % 10];
            t->initial = !strcmp(t->status, "queued") ? "queued" : "running";
            t->created = f.created; /* created together, same millisecond */
            t->changed = f.created + 5;
            t->outcome = NULL;
            t->cancel_requested = 0;
            uuid7(t->created, t->id);
            f.status = mirror(t->status);
            f.initial = mirror(t->initial);
            f.ended = task_is_terminal(t->status);
            f.revision = strcmp(f.status, f.initial) ? 1 : 0;
            f.updated = f.revision ? t->changed : f.created;
            t->flow_revision = f.revision; /* written with the manifest, creation or transition */
        } else {
            f.status = all_running ? "running" : managed_flow_status[i % 10];
            f.initial = "running";
            for (int k = 0; k < ntasks; k++) {
                task_t *t = &tasks[k];
                managed_task(f.status, k, ntasks, t);
                t->created = f.created + 1 + k;
                t->changed = f.created + 5;
                uuid7(t->created, t->id);
            }
            if (!strcmp(f.status, "blocked") && ntasks > 1) f.blocked_task = tasks[1].id;
            f.cancel_requested = !strcmp(f.status, "cancelled");
            f.cancel_at = f.created + 4; /* before the tasks' final reports (created + 5) */
            f.ended = flow_terminal_status(f.status, 0) != NULL;
            /* A status change is one manifest write; a cancel is two (the request, then the
             * write that settles the last active task). */
            f.revision = f.cancel_requested ? 2 : strcmp(f.status, f.initial) ? 1 : 0;
            f.updated = f.revision ? f.created + 6 : f.created;
            /* Links and task reports leave a managed flow's manifest alone (revision 0); the
             * cancel writes the tasks it asks to stop together with the manifest. */
            for (int k = 0; k < ntasks; k++) tasks[k].flow_revision = tasks[k].cancel_requested ? f.revision : 0;
        }
        int nt = mode == MANAGED ? ntasks : 1;

        /* The flow directory and its records. */
        if (mkdirat(flowsfd, f.id, 0700) != 0) die("mkdir flow", f.id);
        int flowfd = open_dir(flowsfd, f.id);
        mkdir_at(flowfd, "tasks");
        int tasksfd = open_dir(flowfd, "tasks");
        for (int k = 0; k < nt; k++) write_task(tasksfd, &f, &tasks[k], owner, &b);
        write_manifest(flowfd, &f, mode, owner, i, &b);
        write_events(flowfd, &f, tasks, nt, mode, owner, &b);
        close(tasksfd);
        close(flowfd);

        /* Indexes. */
        snprintf(target, sizeof target, "../../flows/%s", f.id);
        for (int k = 0; k < nt; k++) symlink_at(target, taskixfd, tasks[k].id);
        if (g == i) mkdir_at(ownerixfd, owner);
        snprintf(path, sizeof path, "%s/%s", owner, f.id);
        snprintf(target, sizeof target, "../../../flows/%s", f.id);
        symlink_at(target, ownerixfd, path);

        /* Owner pick: flows come oldest first, so the latest seen is the newest. */
        memcpy(pick_any[g - lo], f.id, 37);
        if (!f.ended) memcpy(pick_live[g - lo], f.id, 37);
    }

    for (long g = lo; g < hi; g++) {
        if (!pick_any[g - lo][0]) continue;
        snprintf(owner, sizeof owner, "owner-%ld", g);
        snprintf(target, sizeof target, "../flows/%s", pick_live[g - lo][0] ? pick_live[g - lo] : pick_any[g - lo]);
        symlink_at(target, ownersfd, owner);
    }
    free(pick_any);
    free(pick_live);
    free(b.p);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: mkspool DIR NFLOWS mirrored | mkspool DIR NFLOWS managed TASKS [running]\n");
        return 64;
    }
    const char *root = argv[1];
    long nflows = atol(argv[2]);
    int mode = !strcmp(argv[3], "managed") ? MANAGED : MIRRORED;
    int ntasks = mode == MANAGED ? (argc > 4 ? atoi(argv[4]) : 3) : 1;
    all_running = mode == MANAGED && argc > 5 && !strcmp(argv[5], "running");
    if (nflows <= 0 || ntasks < 1 || ntasks > 64 || (mode == MIRRORED && strcmp(argv[3], "mirrored"))) {
        fprintf(stderr, "mkspool: bad arguments\n");
        return 64;
    }
    umask(077);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    int64_t now_ms = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    int64_t base = now_ms - 10 * (int64_t)nflows - 3600 * 1000;

    if (mkdir(root, 0700) != 0 && errno != EEXIST) die("mkdir", root);
    rootfd = open_dir(AT_FDCWD, root);
    static const char *dirs[] = {"flows", "owners", "index", "index/owners", "index/tasks", "index/runs", "incoming",
                                 "incoming/tmp", "incoming/new", "incoming/claimed", "incoming/applied",
                                 "rejected", "tmp", "run"};
    for (size_t k = 0; k < sizeof dirs / sizeof *dirs; k++) mkdir_at(rootfd, dirs[k]);
    flowsfd = open_dir(rootfd, "flows");
    ownersfd = open_dir(rootfd, "owners");
    ownerixfd = open_dir(rootfd, "index/owners");
    taskixfd = open_dir(rootfd, "index/tasks");
    /* No task written here has a run id, so the empty run index is complete. */
    int done = openat(rootfd, "index/runs/.complete", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (done < 0) die("create", "index/runs/.complete");
    close(done);

    /* Two workers (the machine has two cores; the work is mostly kernel time), each on a
     * range of whole owner groups. Small spools are built in one process. */
    long workers = nflows >= 2000 ? 2 : 1;
    long chunk = (nflows / workers + 99) / 100 * 100;
    pid_t pids[2];
    for (long w = 0; w < workers; w++) {
        long lo = w * chunk, hi = w == workers - 1 ? nflows : (w + 1) * chunk;
        pid_t pid = fork();
        if (pid < 0) die("fork", NULL);
        if (pid == 0) {
            rng_state ^= (uint64_t)now_ms * 0x100000001b3ULL ^ ((uint64_t)getpid() << 20) ^ (uint64_t)w;
            build_range(lo, hi, mode, ntasks, base);
            _exit(0);
        }
        pids[w] = pid;
    }
    int failed = 0;
    for (long w = 0; w < workers; w++) {
        int status;
        if (waitpid(pids[w], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
    }
    if (failed) { fprintf(stderr, "mkspool: a worker failed\n"); return 1; }

    long owners = 0;
    for (long i = 0; i < nflows; i++) owners += !(i % 100 >= 1 && i % 100 <= 3);

    /* VERSION last, as clawflow does: its presence says the layout is complete. */
    buf b = {malloc(64), 0, 64};
    bput(&b, "clawflow-spool 1\n");
    write_file(rootfd, "VERSION", &b);
    printf("mkspool: %s: %ld flows (%s), %ld tasks, %ld owners\n", root, nflows,
           mode == MANAGED ? "managed" : "task_mirrored", nflows * (mode == MANAGED ? ntasks : 1), owners);
    return 0;
}
