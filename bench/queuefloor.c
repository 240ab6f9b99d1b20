/*
 * queuefloor: the least durable work `clawflow run --queue Q -- CMD` has to do when Q has
 * slots, written in C with no clawflow code, for bench/queue-vs-tsp.sh. runfloor.c is the
 * same for a job that starts at once; this adds the queue: a waiting entry made durable with
 * the flow, a slot hand-off under a lock, and a supervisor that hands its slot on when its
 * job ends, so no daemon is needed (spool-layout.md, "Queues").
 *
 *   queuefloor DIR SLOTS KEY CMD [ARG...]   (DIR holds tmp/, flows/, owners/, waiting/,
 *                                            running/; the benchmark makes them)
 *
 * What it does, each step durable before the next relies on it:
 *   1. under the hand-off lock (below), the flow as runfloor makes it (floor_new_flow: staging directory, task file,
 *      manifest.json, events.jsonl, the rename into flows/, the owner link), with its empty
 *      entry waiting/<id> created before the first barrier and waiting/ flushed in it;
 *   2. prints the flow id, then the hand-off: under an exclusive flock on DIR/running, the
 *      jobs holding a slot are counted (an entry of running/ whose lock is held: its
 *      supervisor is alive; one that is not is removed), and while fewer than SLOTS hold one,
 *      the first entry of waiting/ by name (ids sort by arrival) is renamed into running/
 *      (both directories flushed) and its supervisor forked, holding the entry's lock;
 *   3. the supervisor runs the job as runfloor's does (running, then its end, each a task
 *      file and manifest replaced and an event appended, flushed with the two directories),
 *      removes its running/ entry, lets the lock go and does the hand-off itself.
 * A job's command is kept in its queue entry (its argv, NUL-terminated words, flushed with
 * the flow), which its supervisor reads through the entry it holds. When the job ends, its
 * supervisor appends "<started> <ended>\n" (milliseconds since the epoch, each taken as the
 * write that records it begins, as clawflow's startedAt and endedAt are) to DIR/times,
 * unflushed, for the benchmark's hand-off figure. No JSON, no indexes: files and flushes.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <sys/file.h>
#include <sys/wait.h>
#include "floor.h"

static int root_fd, flows_fd, waiting_fd, running_fd, slots;

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void handoff(void);

/* The job's supervisor: its own session, the entry's lock kept in `entry`. */
static void supervise(const char *id, int entry) {
    setsid();
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    if (getenv("QUEUEFLOOR_DEBUG") == NULL) dup2(null, 2);
    int flow = floor_open_dir(flows_fd, id), tasks = floor_open_dir(flow, "tasks");
    static char words[8192];
    char *command[64];
    ssize_t got = pread(entry, words, sizeof words - 1, 0);
    if (got <= 0) floor_fail("the entry's command");
    int argc = 0;
    for (ssize_t k = 0; k < got && argc < 63; k += (ssize_t)strlen(words + k) + 1) command[argc++] = words + k;
    command[argc] = NULL;
    pid_t pid = floor_spawn_logged(tasks, command);
    long long started = now_ms();
    floor_transition(flow, tasks); /* running */
    int status;
    while (waitpid(pid, &status, 0) < 0) {}
    long long ended = now_ms();
    floor_transition(flow, tasks); /* succeeded or failed */
    unlinkat(running_fd, id, 0);
    char line[64];
    int len = snprintf(line, sizeof line, "%lld %lld\n", started, ended);
    int times = openat(root_fd, "times", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (times >= 0 && write(times, line, len) != len) floor_fail("times");
    close(times);
    close(entry);
    handoff();
    _exit(0);
}

/* The first name in waiting/ (ids sort by arrival), or 0 when it is empty. */
static int first_waiting(char *out, size_t cap) {
    int fd = openat(waiting_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fdopendir(fd);
    if (d == NULL) floor_fail("waiting/");
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (!found || strcmp(e->d_name, out) < 0) snprintf(out, cap, "%s", e->d_name);
        found = 1;
    }
    closedir(d);
    return found;
}

/* Slots held: running/ entries whose lock a live supervisor holds; stale ones are removed. */
static int held_slots(void) {
    int fd = openat(running_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fdopendir(fd);
    if (d == NULL) floor_fail("running/");
    struct dirent *e;
    int held = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        int entry = openat(running_fd, e->d_name, O_RDONLY | O_CLOEXEC);
        if (entry < 0) continue;
        if (flock(entry, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) held++;
        else unlinkat(running_fd, e->d_name, 0);
        close(entry);
    }
    closedir(d);
    return held;
}

/* The hand-off lock: an exclusive flock on running/ (returned open). */
static int lock_queue(void) {
    int lock = openat(root_fd, "running", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lock < 0 || flock(lock, LOCK_EX) != 0) floor_fail("lock");
    return lock;
}

/* Under the lock `lock`, which it drops. */
static void handoff_locked(int lock) {
    int held = held_slots();
    char id[256];
    while (held < slots && first_waiting(id, sizeof id)) {
        if (renameat(waiting_fd, id, running_fd, id) != 0) floor_fail("rename into running/");
        int dirs[2] = {running_fd, waiting_fd};
        floor_barrier(dirs, 2);
        int entry = openat(running_fd, id, O_RDONLY | O_CLOEXEC);
        if (entry < 0 || flock(entry, LOCK_EX) != 0) floor_fail("entry lock");
        pid_t pid = fork();
        if (pid < 0) floor_fail("fork");
        if (pid == 0) {
            close(lock); /* the parent's copy keeps (and then drops) the hand-off lock */
            floor_after_fork();
            supervise(id, entry);
        }
        close(entry);
        held++;
    }
    close(lock); /* drops the flock */
}

static void handoff(void) { handoff_locked(lock_queue()); }

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: queuefloor DIR SLOTS KEY CMD [ARG...]\n"); return 2; }
    slots = atoi(argv[2]);
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    char id[64];
    snprintf(id, sizeof id, "%lld-%09ld-%d", (long long)t.tv_sec, t.tv_nsec, (int)getpid());
    root_fd = floor_open_dir(AT_FDCWD, argv[1]);
    int tmp = floor_open_dir(root_fd, "tmp"), owners = floor_open_dir(root_fd, "owners");
    flows_fd = floor_open_dir(root_fd, "flows");
    waiting_fd = floor_open_dir(root_fd, "waiting");
    running_fd = floor_open_dir(root_fd, "running");
    int dir, tasks;
    double visible;
    char text[256];
    int first_link = readlinkat(owners, argv[3], text, sizeof text) < 0; /* the key has no link yet */
    /* Under the lock from before the entry exists until the flow does: a hand-off never
     * meets the entry of a flow still being made. */
    int lock = lock_queue();
    int entry = openat(waiting_fd, id, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (entry < 0) floor_fail("waiting entry");
    for (int k = 4; k < argc; k++)
        if (write(entry, argv[k], strlen(argv[k]) + 1) < 0) floor_fail("waiting entry");
    int extra[2] = {entry, waiting_fd};
    floor_new_flow(tmp, flows_fd, owners, id, argv[3], first_link, extra, 2, &dir, &tasks, &visible);
    close(entry);
    printf("%s\n", id);
    fflush(stdout);
    handoff_locked(lock);
    return 0;
}
