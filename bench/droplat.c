/*
 * droplat: drop -> applied latency of `clawflow watch`, a raw inotify baseline, and a
 * burst-ingest timer, for bench/watch.sh.
 *
 *   droplat clawflow SPOOL N   N sequential task drops into a spool a watcher is running on:
 *                              write incoming/tmp/lat-<i>.json ({"kind":"task","ownerKey":"lat-<i>",
 *                              ...}), t0 = CLOCK_MONOTONIC, rename it into incoming/new/, wait
 *                              (inotify on owners/, IN_MOVED_TO|IN_CREATE, confirmed by opening
 *                              owners/lat-<i>/manifest.json), t1. Prints median, p99, max in ms.
 *   droplat raw DIR N          the floor: a forked child waits with inotify on DIR/d for
 *                              IN_MOVED_TO and on each event does one durable write into DIR/e
 *                              (O_CREAT|O_EXCL temp, write 300 bytes, fsync, rename, fsync(dir));
 *                              the parent renames a file from DIR/src into DIR/d and waits
 *                              (inotify on DIR/e) until the final name appears. Same figures.
 *   droplat compare SPOOL DIR N BLOCK   both of the above (raw in DIR/raw), and a C watcher
 *                              made like raw's child that writes clawflow's layout for each drop
 *                              (floor_model_flow in floor.h, in DIR/model; waited for at
 *                              owners/owner-x-<i>/manifest.json), N samples each, alternating in
 *                              blocks of BLOCK, so that all three see the same state of the disk;
 *                              RESULT keys prefixed clawflow_, raw_ and model_.
 *   droplat update SPOOL N     one task drop (owner upd, a chosen taskId), then N task-update drops
 *                              for it, one after another, each timed until the task file shows
 *                              its progressSummary (inotify on the flow's tasks/). Same figures.
 *   droplat burst SPOOL N      writes N task drops (ownerKey burst-<i>) into incoming/tmp/, then
 *                              renames them all into incoming/new/ as fast as it can and waits
 *                              until incoming/new/ is empty and flows/ holds N flows. Prints the
 *                              seconds from the first rename and drops/s. Gives up after
 *                              BURST_TIMEOUT seconds (env, default 600).
 *   droplat rawburst DIR N     the burst baseline: the raw baseline's C watcher (one durable write
 *                              per drop) under DIR given N renames at once; seconds and drops/s.
 *
 * Output: one line "RESULT key=value ..." for the script, preceded by human-readable lines.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "floor.h"

static void die(const char *what, const char *name) {
    fprintf(stderr, "droplat: %s %s: %s\n", what, name ? name : "", strerror(errno));
    exit(1);
}

/* Prints the figures of `lat`, and a line "RESULT <key>n=... <key>median_ms=..." for scripts. */
static void report(const char *label, const char *key, double *lat, int n) {
    qsort(lat, n, sizeof *lat, floor_cmp);
    double med = n % 2 ? lat[n / 2] : (lat[n / 2 - 1] + lat[n / 2]) / 2;
    int i99 = (int)(0.99 * n + 0.999999) - 1; /* nearest-rank p99 */
    if (i99 < 0) i99 = 0;
    printf("%s: %d samples, median %.3f ms, p99 %.3f ms, min %.3f ms, max %.3f ms\n", label, n,
           med * 1e3, lat[i99] * 1e3, lat[0] * 1e3, lat[n - 1] * 1e3);
    printf("RESULT %sn=%d %smedian_ms=%.3f %sp99_ms=%.3f %smin_ms=%.3f %smax_ms=%.3f\n", key, n, key, med * 1e3,
           key, lat[i99] * 1e3, key, lat[0] * 1e3, key, lat[n - 1] * 1e3);
}

static void write_all(const char *path, const char *data, size_t len, int flags) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | flags, 0600);
    if (fd < 0) die("open", path);
    if (write(fd, data, len) != (ssize_t)len) die("write", path);
    close(fd);
}

/* Wait until `ready()` holds, reading inotify events (any event re-checks). 10 s timeout. */
static int wait_until(int ifd, int (*ready)(const void *), const void *arg) {
    char buf[64 * 1024] __attribute__((aligned(8)));
    double deadline = floor_now() + 10;
    for (;;) {
        if (ready(arg)) return 0;
        struct pollfd p = {ifd, POLLIN, 0};
        int ms = (int)((deadline - floor_now()) * 1000);
        if (ms <= 0) return -1;
        int r = poll(&p, 1, ms);
        if (r < 0 && errno != EINTR) die("poll", NULL);
        if (r > 0 && read(ifd, buf, sizeof buf) < 0 && errno != EAGAIN) die("read inotify", NULL);
    }
}

static int exists(const void *path) {
    int fd = open((const char *)path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    close(fd);
    return 1;
}

/* ---- clawflow mode ------------------------------------------------------------------- */

struct clawflow_state {
    char owners[4096], tmp[4096], new_[4096];
    int ifd;
};

static void clawflow_open(struct clawflow_state *c, const char *spool) {
    snprintf(c->owners, sizeof c->owners, "%s/owners", spool);
    snprintf(c->tmp, sizeof c->tmp, "%s/incoming/tmp", spool);
    snprintf(c->new_, sizeof c->new_, "%s/incoming/new", spool);
    c->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (c->ifd < 0) die("inotify_init1", NULL);
    if (inotify_add_watch(c->ifd, c->owners, IN_MOVED_TO | IN_CREATE) < 0) die("inotify_add_watch", c->owners);
}

/* Drop lat-<i> and wait until it is applied; returns the seconds taken, or -1. */
static double clawflow_one(struct clawflow_state *c, int i) {
    char from[4200], to[4200], want[4200], body[512];
    snprintf(from, sizeof from, "%s/lat-%d.json", c->tmp, i);
    snprintf(to, sizeof to, "%s/lat-%d.json", c->new_, i);
    snprintf(want, sizeof want, "%s/lat-%d/manifest.json", c->owners, i);
    int len = snprintf(body, sizeof body,
                       "{\"kind\":\"task\",\"ownerKey\":\"lat-%d\",\"runtime\":\"cron\",\"runId\":\"lat-%d\"}\n", i, i);
    write_all(from, body, len, 0);
    double t0 = floor_now();
    if (rename(from, to) < 0) die("rename", from);
    if (wait_until(c->ifd, exists, want) < 0) {
        fprintf(stderr, "droplat: drop lat-%d not applied within 10 s (%s missing)\n", i, want);
        return -1;
    }
    return floor_now() - t0;
}

/* ---- raw baseline -------------------------------------------------------------------- */

/* The child of a C watcher: waits with inotify on `d` for IN_MOVED_TO and, for each name N that
 * arrives, either does one durable write of e/N (`model` null: the raw baseline) or writes a new
 * flow N as clawflow's layout for a drop (`model`: floor_model_flow, link owners/owner-N). */
static void child_writer(const char *d, const char *e, const struct floor_spool *model) {
    int ifd = inotify_init1(IN_CLOEXEC);
    if (ifd < 0) die("inotify_init1", NULL);
    if (inotify_add_watch(ifd, d, IN_MOVED_TO) < 0) die("inotify_add_watch", d);
    int efd = open(e, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (efd < 0) die("open", e);
    char payload[300];
    memset(payload, 'x', sizeof payload);
    payload[sizeof payload - 1] = '\n';
    if (write(1, "R", 1) != 1) die("write ready", NULL); /* stdout is a pipe: ready */
    char buf[64 * 1024] __attribute__((aligned(8)));
    for (;;) {
        ssize_t r = read(ifd, buf, sizeof buf);
        if (r <= 0) { if (errno == EINTR) continue; die("read inotify", NULL); }
        for (char *p = buf; p < buf + r;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (!(ev->mask & IN_MOVED_TO) || !ev->len) continue;
            if (model) {
                double visible;
                floor_model_flow(model, ev->name, 1, &visible);
                continue;
            }
            char tname[512];
            snprintf(tname, sizeof tname, ".%s.tmp", ev->name);
            int fd = openat(efd, tname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (fd < 0) die("openat", tname);
            if (write(fd, payload, sizeof payload) != sizeof payload) die("write", tname);
            if (fsync(fd) < 0) die("fsync", tname);
            close(fd);
            if (renameat(efd, tname, efd, ev->name) < 0) die("renameat", tname);
            if (fsync(efd) < 0) die("fsync", e);
        }
    }
}

struct raw_state {
    char d[4096], e[4096], src[4096], owners[4200];
    int ifd, model;
    pid_t child;
};

/* A C watcher under `dir`: the raw baseline, or with `model` clawflow's layout (its spool in
 * dir/spool). */
static void raw_open(struct raw_state *r, const char *dir, int model) {
    snprintf(r->d, sizeof r->d, "%s/d", dir);
    snprintf(r->e, sizeof r->e, "%s/e", dir);
    snprintf(r->src, sizeof r->src, "%s/src", dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) die("mkdir", dir);
    if (mkdir(r->d, 0700) < 0 || mkdir(r->e, 0700) < 0 || mkdir(r->src, 0700) < 0) die("mkdir under", dir);
    r->model = model;
    struct floor_spool sp;
    if (model) {
        char spool[4200];
        snprintf(spool, sizeof spool, "%s/spool", dir);
        floor_spool_make(&sp, spool);
        snprintf(r->owners, sizeof r->owners, "%s/owners", spool);
    }
    r->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (r->ifd < 0) die("inotify_init1", NULL);
    const char *watched = model ? r->owners : r->e;
    if (inotify_add_watch(r->ifd, watched, IN_MOVED_TO | IN_CREATE) < 0) die("inotify_add_watch", watched);
    int pfd[2];
    if (pipe(pfd) < 0) die("pipe", NULL);
    r->child = fork();
    if (r->child < 0) die("fork", NULL);
    if (r->child == 0) {
        close(pfd[0]);
        dup2(pfd[1], 1);
        child_writer(r->d, r->e, model ? &sp : NULL);
        _exit(0);
    }
    close(pfd[1]);
    char c;
    if (read(pfd[0], &c, 1) != 1) die("child did not start", NULL);
    close(pfd[0]);
}

/* Rename x-<i> into d/ and wait until the child's write is visible (e/x-<i>, or the model's
 * owners/owner-x-<i>/manifest.json); seconds, or -1. */
static double raw_one(struct raw_state *r, int i) {
    static const char body[] = "{\"kind\":\"task\",\"ownerKey\":\"raw\",\"runtime\":\"cron\",\"runId\":\"raw\"}\n";
    char from[4200], to[4200], want[4400];
    snprintf(from, sizeof from, "%s/x-%d", r->src, i);
    snprintf(to, sizeof to, "%s/x-%d", r->d, i);
    if (r->model) snprintf(want, sizeof want, "%s/owner-x-%d/manifest.json", r->owners, i);
    else snprintf(want, sizeof want, "%s/x-%d", r->e, i);
    write_all(from, body, sizeof body - 1, 0);
    double t0 = floor_now();
    if (rename(from, to) < 0) die("rename", from);
    if (wait_until(r->ifd, exists, want) < 0) {
        fprintf(stderr, "droplat: %s x-%d not written within 10 s\n", r->model ? "model" : "raw", i);
        return -1;
    }
    return floor_now() - t0;
}

static void raw_close(struct raw_state *r) {
    kill(r->child, SIGTERM);
    waitpid(r->child, NULL, 0);
}

static int run_clawflow(const char *spool, int n) {
    struct clawflow_state c;
    clawflow_open(&c, spool);
    double *lat = calloc(n, sizeof *lat);
    for (int i = 0; i < n; i++)
        if ((lat[i] = clawflow_one(&c, i)) < 0) return 1;
    report("clawflow drop -> applied", "", lat, n);
    return 0;
}

static int run_raw(const char *dir, int n) {
    struct raw_state r;
    raw_open(&r, dir, 0);
    double *lat = calloc(n, sizeof *lat);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        if ((lat[i] = raw_one(&r, i)) < 0) rc = 1;
    raw_close(&r);
    if (rc == 0) report("raw inotify wait + 1 durable write", "", lat, n);
    return rc;
}

/* The three, alternating in blocks of `block`: clawflow, the raw baseline (DIR/raw), and a C
 * watcher writing clawflow's layout for a drop (DIR/model: floor_model_flow, 13 fsyncs), timed
 * the same way as the raw baseline, so that all three see the same state of the disk. */
static int run_compare(const char *spool, const char *dir, int n, int block) {
    char rawdir[4200], modeldir[4200];
    snprintf(rawdir, sizeof rawdir, "%s/raw", dir);
    snprintf(modeldir, sizeof modeldir, "%s/model", dir);
    struct clawflow_state c;
    struct raw_state r, m;
    clawflow_open(&c, spool);
    raw_open(&r, rawdir, 0);
    raw_open(&m, modeldir, 1);
    double *cl = calloc(n, sizeof *cl), *rl = calloc(n, sizeof *rl), *ml = calloc(n, sizeof *ml);
    int rc = 0;
    for (int start = 0; start < n && rc == 0; start += block) {
        int end = start + block < n ? start + block : n;
        for (int i = start; i < end && rc == 0; i++)
            if ((cl[i] = clawflow_one(&c, i)) < 0) rc = 1;
        for (int i = start; i < end && rc == 0; i++)
            if ((rl[i] = raw_one(&r, i)) < 0) rc = 1;
        for (int i = start; i < end && rc == 0; i++)
            if ((ml[i] = raw_one(&m, i)) < 0) rc = 1;
    }
    raw_close(&r);
    raw_close(&m);
    if (rc) return rc;
    report("clawflow drop -> applied", "clawflow_", cl, n);
    report("raw inotify wait + 1 durable write", "raw_", rl, n);
    report("a C watcher writing clawflow's layout for each drop", "model_", ml, n);
    return 0;
}

/* ---- update mode --------------------------------------------------------------------- */

struct contains_arg {
    const char *path, *text;
};

static int file_contains(const void *a) { /* the file holds `text` (read whole, up to 64 KiB) */
    const struct contains_arg *c = a;
    char buf[65536];
    int fd = open(c->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    return strstr(buf, c->text) != NULL;
}

/* One task (taskId chosen, owner upd), then N task-update drops for it, each waited for until
 * the task file shows its progressSummary (inotify on the flow's tasks/, confirmed by reading). */
static int run_update(const char *spool, int n) {
    static const char *task = "0b5f7f3e-1d2c-4b8a-9e6f-123456789abc";
    char from[4200], to[4200], link[4200], target[4200], tasks[4400], file[4600], body[512], text[64];
    snprintf(from, sizeof from, "%s/incoming/tmp/upd-task.json", spool);
    snprintf(to, sizeof to, "%s/incoming/new/upd-task.json", spool);
    int len = snprintf(body, sizeof body, "{\"kind\":\"task\",\"ownerKey\":\"upd\",\"runtime\":\"cron\",\"taskId\":\"%s\",\"status\":\"running\"}\n", task);
    write_all(from, body, len, 0);
    if (rename(from, to) < 0) die("rename", from);
    snprintf(link, sizeof link, "%s/owners/upd", spool);
    ssize_t tl = -1;
    for (int k = 0; k < 10000 && tl < 0; k++) {
        tl = readlink(link, target, sizeof target - 1);
        if (tl < 0) usleep(1000);
    }
    if (tl < 0) die("the task drop was not applied within 10 s:", link);
    target[tl] = 0; /* ../flows/<id> */
    snprintf(tasks, sizeof tasks, "%s/owners/%s/tasks", spool, target);
    snprintf(file, sizeof file, "%s/%s.json", tasks, task);
    int ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ifd < 0) die("inotify_init1", NULL);
    if (inotify_add_watch(ifd, tasks, IN_MOVED_TO) < 0) die("inotify_add_watch", tasks);
    double *lat = calloc(n, sizeof *lat);
    for (int i = 0; i < n; i++) {
        snprintf(from, sizeof from, "%s/incoming/tmp/upd-%d.json", spool, i);
        snprintf(to, sizeof to, "%s/incoming/new/upd-%d.json", spool, i);
        snprintf(text, sizeof text, "\"step %d\"", i);
        len = snprintf(body, sizeof body, "{\"kind\":\"task-update\",\"taskId\":\"%s\",\"status\":\"running\",\"progressSummary\":\"step %d\"}\n", task, i);
        write_all(from, body, len, 0);
        double t0 = floor_now();
        if (rename(from, to) < 0) die("rename", from);
        struct contains_arg want = {file, text};
        if (wait_until(ifd, file_contains, &want) < 0) {
            fprintf(stderr, "droplat: update upd-%d not applied within 10 s\n", i);
            return 1;
        }
        lat[i] = floor_now() - t0;
    }
    report("clawflow task-update drop -> applied", "", lat, n);
    return 0;
}

/* ---- burst --------------------------------------------------------------------------- */

static long count_entries(const char *path) { /* entries not beginning with '.' */
    DIR *dp = opendir(path);
    if (!dp) die("opendir", path);
    long c = 0;
    struct dirent *de;
    while ((de = readdir(dp))) c += de->d_name[0] != '.';
    closedir(dp);
    return c;
}

static int run_burst(const char *spool, int n) {
    char tmpd[4096], newd[4096], flows[4096], from[4096], to[4096], body[512];
    snprintf(tmpd, sizeof tmpd, "%s/incoming/tmp", spool);
    snprintf(newd, sizeof newd, "%s/incoming/new", spool);
    snprintf(flows, sizeof flows, "%s/flows", spool);
    long before = count_entries(flows);
    for (int i = 0; i < n; i++) {
        snprintf(from, sizeof from, "%s/burst-%d.json", tmpd, i);
        int len = snprintf(body, sizeof body,
                           "{\"kind\":\"task\",\"ownerKey\":\"burst-%d\",\"runtime\":\"cron\",\"runId\":\"burst-%d\"}\n", i, i);
        write_all(from, body, len, 0);
    }
    const char *to_env = getenv("BURST_TIMEOUT");
    double timeout = to_env ? atof(to_env) : 600;
    double t0 = floor_now();
    for (int i = 0; i < n; i++) {
        snprintf(from, sizeof from, "%s/burst-%d.json", tmpd, i);
        snprintf(to, sizeof to, "%s/burst-%d.json", newd, i);
        if (rename(from, to) < 0) die("rename", from);
    }
    double t_renamed = floor_now() - t0, last_print = floor_now();
    long pending, nflows;
    for (;;) {
        pending = count_entries(newd);
        nflows = count_entries(flows) - before;
        if (pending == 0 && nflows >= n) break;
        if (floor_now() - t0 > timeout) {
            fprintf(stderr, "droplat: burst: gave up after %.0f s: %ld drops still in incoming/new, %ld of %d flows\n",
                    timeout, pending, nflows, n);
            return 1;
        }
        if (floor_now() - last_print > 10) {
            fprintf(stderr, "  burst: %.0f s: %ld drops waiting, %ld flows made\n", floor_now() - t0, pending, nflows);
            last_print = floor_now();
        }
        usleep(20 * 1000);
    }
    double el = floor_now() - t0;
    printf("burst: %d drops renamed in %.3f s; all applied (%ld flows) after %.3f s = %.0f drops/s\n", n, t_renamed,
           nflows, el, n / el);
    printf("RESULT n=%d seconds=%.3f rate=%.1f rename_s=%.3f\n", n, el, n / el, t_renamed);
    return 0;
}

/* The burst baseline: the raw baseline's C watcher (one durable write per drop: O_EXCL temp,
 * 300 bytes, fsync, rename, fsync of the directory) given N renames at once, timed until it
 * has written all N. */
static int run_rawburst(const char *dir, int n) {
    struct raw_state r;
    raw_open(&r, dir, 0);
    static const char body[] = "{\"kind\":\"task\",\"ownerKey\":\"raw\",\"runtime\":\"cron\",\"runId\":\"raw\"}\n";
    char from[4200], to[4200];
    for (int i = 0; i < n; i++) {
        snprintf(from, sizeof from, "%s/x-%d", r.src, i);
        write_all(from, body, sizeof body - 1, 0);
    }
    double t0 = floor_now();
    for (int i = 0; i < n; i++) {
        snprintf(from, sizeof from, "%s/x-%d", r.src, i);
        snprintf(to, sizeof to, "%s/x-%d", r.d, i);
        if (rename(from, to) < 0) die("rename", from);
    }
    while (count_entries(r.e) < n) {
        if (floor_now() - t0 > 600) {
            fprintf(stderr, "droplat: rawburst: gave up after 600 s\n");
            raw_close(&r);
            return 1;
        }
        usleep(20 * 1000);
    }
    double el = floor_now() - t0;
    raw_close(&r);
    printf("rawburst: %d drops, one durable write each, after %.3f s = %.0f drops/s\n", n, el, n / el);
    printf("RESULT n=%d seconds=%.3f rate=%.1f\n", n, el, n / el);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 6 && !strcmp(argv[1], "compare") && atoi(argv[4]) > 0 && atoi(argv[5]) > 0)
        return run_compare(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]));
    if (argc != 4 || atoi(argv[3]) <= 0) {
        fprintf(stderr, "usage: droplat clawflow SPOOL N | droplat raw DIR N | droplat compare SPOOL DIR N BLOCK | droplat update SPOOL N | droplat burst SPOOL N | droplat rawburst DIR N\n");
        return 64;
    }
    int n = atoi(argv[3]);
    if (!strcmp(argv[1], "clawflow")) return run_clawflow(argv[2], n);
    if (!strcmp(argv[1], "raw")) return run_raw(argv[2], n);
    if (!strcmp(argv[1], "burst")) return run_burst(argv[2], n);
    if (!strcmp(argv[1], "rawburst")) return run_rawburst(argv[2], n);
    if (!strcmp(argv[1], "update")) return run_update(argv[2], n);
    fprintf(stderr, "droplat: unknown mode %s\n", argv[1]);
    return 64;
}
