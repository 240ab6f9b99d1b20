#define _GNU_SOURCE
#include "CSystemShims.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <signal.h>
#include <unistd.h>

int clawflow_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}

unsigned int clawflow_rename_noreplace(void) { return RENAME_NOREPLACE; }

int clawflow_syncfs(int fd) { return syncfs(fd); }

#include <sys/file.h>
int clawflow_flock(int fd, int operation) { return flock(fd, operation); }

#include <sys/syscall.h>
long clawflow_getdents64(int fd, void *buf, unsigned long count) { return syscall(SYS_getdents64, fd, buf, count); }

#include <sys/vfs.h>
long clawflow_filesystem_magic(const char *path) {
    struct statfs buf;
    if (statfs(path, &buf) != 0) return -1;
    return (long)buf.f_type;
}

long clawflow_fd_filesystem_magic(int fd) {
    struct statfs buf;
    if (fstatfs(fd, &buf) != 0) return -1;
    return (long)buf.f_type;
}

#include <pthread.h>
#include <stdlib.h>

/* Parallel fsync (see the header): a few threads, started on first use and kept, take the
 * next index of the current job from a shared counter; the caller works on the job too.
 * One job runs at a time. */
struct clawflow_flush_job {
    const int *fds;
    int *errors;
    int count;
    int next;
    int finished;
};

/* Helper threads, started as jobs need them: a barrier of n objects runs on up to n threads
 * (the caller and n - 1 helpers), since concurrent fsyncs share device flushes. Measured with
 * bench/layoutfloor.c limited to 4 at a time, a barrier of 10 took 12-25% longer. */
#define CLAWFLOW_FLUSH_THREADS_MAX 15
static pthread_mutex_t flush_callers = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t flush_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t flush_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t flush_done = PTHREAD_COND_INITIALIZER;
static struct clawflow_flush_job *flush_current;
static int flush_threads_started; /* helpers running */

/* Runs items of the current job until none is left; call with flush_mutex held. */
static void clawflow_flush_run(struct clawflow_flush_job *job) {
    while (job->next < job->count) {
        int i = job->next++;
        pthread_mutex_unlock(&flush_mutex);
        int rc;
        do { rc = fsync(job->fds[i]); } while (rc != 0 && errno == EINTR);
        int e = rc == 0 ? 0 : errno;
        pthread_mutex_lock(&flush_mutex);
        job->errors[i] = e;
        if (++job->finished == job->count) pthread_cond_broadcast(&flush_done);
    }
}

static void *clawflow_flush_thread(void *unused) {
    (void)unused;
    pthread_setname_np(pthread_self(), "clawflow-flush"); /* not the creator's name, in top -H */
    pthread_mutex_lock(&flush_mutex);
    for (;;) {
        while (flush_current == NULL || flush_current->next >= flush_current->count)
            pthread_cond_wait(&flush_work, &flush_mutex);
        clawflow_flush_run(flush_current);
    }
    return NULL;
}

/* A forked child has none of the parent's threads: it starts its own if it flushes. */
static void clawflow_flush_after_fork_child(void) {
    pthread_mutex_init(&flush_callers, NULL);
    pthread_mutex_init(&flush_mutex, NULL);
    pthread_cond_init(&flush_work, NULL);
    pthread_cond_init(&flush_done, NULL);
    flush_current = NULL;
    flush_threads_started = 0;
}

void clawflow_fsync_all(const int *fds, const int *is_file, int *errors, int count) {
    for (int i = 0; i < count; i++) {
        errors[i] = 0;
        /* Start the data writeback of every file first, so the device sees it together. */
        if (is_file[i]) (void)sync_file_range(fds[i], 0, 0, SYNC_FILE_RANGE_WRITE);
    }
    struct clawflow_flush_job job = { fds, errors, count, 0, 0 };
    pthread_mutex_lock(&flush_callers);
    pthread_mutex_lock(&flush_mutex);
    int wanted = count - 1 < CLAWFLOW_FLUSH_THREADS_MAX ? count - 1 : CLAWFLOW_FLUSH_THREADS_MAX;
    if (flush_threads_started < wanted) {
        static int atfork_registered;
        if (!atfork_registered) {
            pthread_atfork(NULL, NULL, clawflow_flush_after_fork_child);
            atfork_registered = 1;
        }
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old); /* the helpers never take a signal */
        while (flush_threads_started < wanted) {
            pthread_t thread;
            if (pthread_create(&thread, NULL, clawflow_flush_thread, NULL) != 0) break;
            pthread_detach(thread);
            flush_threads_started++;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    flush_current = &job;
    /* Wake only the helpers this job can use (the caller takes one item itself). */
    for (int t = 0; t < count - 1 && t < flush_threads_started; t++) pthread_cond_signal(&flush_work);
    clawflow_flush_run(&job);
    while (job.finished < job.count) pthread_cond_wait(&flush_done, &flush_mutex);
    flush_current = NULL;
    pthread_mutex_unlock(&flush_mutex);
    pthread_mutex_unlock(&flush_callers);
}

#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

/* execvp's search, done before the fork: `name` itself when it has a '/', else the first
 * PATH entry holding an executable regular file of that name. 0, ENOENT or EACCES. */
static int clawflow_find_program(const char *name, char *out, size_t cap) {
    if (strchr(name, '/') != NULL) {
        if (strlen(name) >= cap) return ENAMETOOLONG;
        strcpy(out, name);
        return 0;
    }
    const char *path = getenv("PATH");
    if (path == NULL) path = "/usr/local/bin:/usr/bin:/bin";
    int found_unusable = 0;
    for (const char *p = path;; p++) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int n = len == 0 ? snprintf(out, cap, "%s", name) : snprintf(out, cap, "%.*s/%s", (int)len, p, name);
        if (n > 0 && (size_t)n < cap) {
            struct stat st;
            if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
                if (access(out, X_OK) == 0) return 0;
                found_unusable = 1;
            }
        }
        if (end == NULL) break;
        p = end;
    }
    return found_unusable ? EACCES : ENOENT;
}

/* A held fork (clawflow_fork_supervisor, clawflow_spawn_held): a socket pair, then fork().
 * The parent gets the child's pid and *release; the child gets *held (close-on-exec), on
 * which it waits for clawflow_release. -1 (errno) when the pair or the fork fails. */
static pid_t clawflow_held_fork(int *release, int *held) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pair[0]);
        close(pair[1]);
        errno = e;
        return -1;
    }
    if (pid > 0) {
        close(pair[1]);
        *release = pair[0];
    } else {
        close(pair[0]);
        *held = pair[1];
    }
    return pid;
}

/* The child's wait in a held fork: returns on the parent's release; exits (status 0, having
 * run nothing) when the parent closes its end or dies first. */
static void clawflow_wait_for_release(int held) {
    char go = 0;
    ssize_t n = -1;
    if (held >= 0) {
        do { n = read(held, &go, 1); } while (n < 0 && errno == EINTR);
    }
    if (n != 1 || go != 'g') _exit(0);
}

/* The descriptors of a held-fork child: stdin from /dev/null, stdout and stderr to stdout_fd
 * (or /dev/null when it is -1), and nothing else of the parent's (no lock, inotify or spool
 * descriptor, no pipe someone waits on for EOF) but the held end of the pair, which is
 * returned: moved above 9 first (the parent may have had 0-2 closed), close-on-exec. -1 when
 * it could not be kept. Async-signal-safe. */
static int clawflow_child_descriptors(int pair_end, int stdout_fd) {
    int held = fcntl(pair_end, F_DUPFD_CLOEXEC, 10);
    int in = open("/dev/null", O_RDONLY);
    if (in >= 0 && in != 0) { dup2(in, 0); close(in); }
    if (stdout_fd >= 0) {
        dup2(stdout_fd, 1);
        dup2(stdout_fd, 2);
    } else {
        int out = open("/dev/null", O_WRONLY);
        if (out >= 0) { dup2(out, 1); dup2(out, 2); if (out > 2) close(out); }
    }
    if (held < 0) {
        (void)syscall(SYS_close_range, 3, ~0U, 0);
    } else {
        if (held > 3) (void)syscall(SYS_close_range, 3, held - 1, 0);
        (void)syscall(SYS_close_range, held + 1, ~0U, 0);
    }
    return held;
}

int clawflow_release(int release, int wait) {
    char go = 'g';
    ssize_t n;
    do { n = send(release, &go, 1, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    int e = 0;
    if (n != 1) {
        e = errno; /* EPIPE: the child is gone */
    } else if (wait) {
        /* EOF: the child closed its end (or exec did); an int: why it could not go on. */
        int reported = 0;
        size_t got = 0;
        while (got < sizeof reported) {
            n = read(release, (char *)&reported + got, sizeof reported - got);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            got += (size_t)n;
        }
        if (got == sizeof reported) e = reported;
    }
    close(release);
    return e;
}

int clawflow_spawn_held(const char *name, char *const argv[], char *const envp[], const char *cwd,
                        int stdout_fd, pid_t *pid, int *release) {
    char path[PATH_MAX];
    int rc = clawflow_find_program(name, path, sizeof path);
    if (rc != 0) return rc;
    int pair_end = -1;
    pid_t child = clawflow_held_fork(release, &pair_end);
    if (child < 0) return errno;
    if (child > 0) {
        *pid = child;
        return 0;
    }
    /* The child of a process that may have other threads: async-signal-safe calls only. */
    (void)setpgid(0, 0);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) (void)sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    int held = clawflow_child_descriptors(pair_end, stdout_fd); /* closes itself when exec succeeds */
    int e = 0;
    if (held < 0) e = EMFILE;
    else if (cwd != NULL && chdir(cwd) != 0) e = errno;
    if (e == 0) {
        clawflow_wait_for_release(held); /* never released: nothing runs untracked */
        execve(path, argv, envp);
        e = errno;
    }
    if (held >= 0) (void)write(held, &e, sizeof e);
    _exit(127);
}

#include <sys/syscall.h>
int clawflow_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

#include <sys/prctl.h>
int clawflow_become_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

pid_t clawflow_fork_supervisor(int *release) {
    int pair_end = -1;
    pid_t pid = clawflow_held_fork(release, &pair_end);
    if (pid != 0) return pid;
    (void)setsid();
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    const int defaults[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
    for (unsigned i = 0; i < sizeof defaults / sizeof defaults[0]; i++) signal(defaults[i], SIG_DFL);
    int held = clawflow_child_descriptors(pair_end, -1);
    (void)prctl(PR_SET_NAME, "clawflow-superv", 0, 0, 0);
    /* Held until the parent has recorded this process as the supervisor, or gave up. */
    clawflow_wait_for_release(held);
    close(held);
    return 0;
}
