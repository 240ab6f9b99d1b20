/* The held fork: a command or a supervisor forked and held until released, after which only C runs in the child. */
#define _GNU_SOURCE
#include "CSystemShims.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <signal.h>
#include <unistd.h>

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
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

/* A held fork (clawflow_spawn_held): a socket pair, then fork().
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

#include <sys/prctl.h>

/* The detached children's fork: a session of their own, no signal blocked, SIGINT, SIGTERM,
 * SIGHUP and SIGQUIT (and SIGPIPE when `pipe_default`) at their defaults, stdin, stdout and
 * stderr on /dev/null, every other descriptor closed but a copy of `keep` (in *kept), and the
 * thread name `name`. Returns as fork() does. */
static pid_t clawflow_detached_fork(int keep, int *kept, const char *name, int pipe_default) {
    clawflow_flush_before_detached_fork();
    pid_t pid = fork();
    if (pid != 0) return pid;
    (void)setsid();
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    const int defaults[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
    for (unsigned i = 0; i < sizeof defaults / sizeof defaults[0]; i++) signal(defaults[i], SIG_DFL);
    if (pipe_default) signal(SIGPIPE, SIG_DFL);
    *kept = clawflow_child_descriptors(keep, -1);
    (void)prctl(PR_SET_NAME, name, 0, 0, 0);
    return 0;
}

pid_t clawflow_fork_supervisor(int keep, int *kept) { return clawflow_detached_fork(keep, kept, "clawflow-superv", 0); }

/* ---- hooks (Deliverer) ---- */

#include <sys/mman.h>

int clawflow_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

#include <spawn.h>

int clawflow_spawn_hook(const char *path, char *const argv[], char *const envp[], const char *cwd,
                        int stdin_fd, int stderr_fd, pid_t *pid) {
    /* posix_spawn: glibc starts the child with CLONE_VM|CLONE_VFORK, which costs the same
     * however large the parent is (a fork of the watcher copies its page tables), and reports
     * an exec that failed as its return value. */
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return rc;
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&actions);
        return rc;
    }
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    if (stdin_fd >= 0) posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0);
    else posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    if (stderr_fd >= 0) posix_spawn_file_actions_adddup2(&actions, stderr_fd, 2);
    else posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    if (cwd != NULL) posix_spawn_file_actions_addchdir_np(&actions, cwd);
    rc = posix_spawn(pid, path, &actions, &attr, argv, envp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    return rc;
}

pid_t clawflow_fork_detached(void) {
    int none = -1;
    return clawflow_detached_fork(-1, &none, "clawflow-notify", 1);
}
