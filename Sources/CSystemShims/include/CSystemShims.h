#ifndef CLAWFLOW_CSYSTEMSHIMS_H
#define CLAWFLOW_CSYSTEMSHIMS_H

#include <sys/types.h>

/* Three parts, a source file each: syscalls.c (what Swift's Glibc module hides or
 * misnames), flush.c (a write barrier's fsyncs issued together), spawn.c (the held fork of a
 * command or a supervisor). */

/* ---- syscalls.c ---- */

/// renameat2(2), hidden from Swift's Glibc module without _GNU_SOURCE.
int clawflow_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
/// The RENAME_NOREPLACE flag value.
unsigned int clawflow_rename_noreplace(void);
/// syncfs(2).
int clawflow_syncfs(int fd);
/// getdents64(2): reads directory entries (struct linux_dirent64) from fd into buf.
long clawflow_getdents64(int fd, void *buf, unsigned long count);

/// The f_type of statfs(2) for path (the filesystem's magic number); -1 on error (errno set).
long clawflow_filesystem_magic(const char *path);
/// The same for the filesystem holding the open descriptor fd (fstatfs(2)).
long clawflow_fd_filesystem_magic(int fd);

/// flock(2), whose name Swift also gives to a struct.
int clawflow_flock(int fd, int operation);

/// pidfd_open(2): a descriptor that becomes readable when the process exits; -1 on error.
int clawflow_pidfd_open(pid_t pid);

/// prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants are re-parented to this process.
int clawflow_become_subreaper(void);

/// Hands a copy of `fd` to a forked keeper process that holds it, and nothing else, until
/// this process exits (then it is killed): the last close of `fd` happens in the keeper, off
/// this process's exit. For inotify instances, whose teardown waits for an SRCU grace period
/// (13-19 ms measured here; bench/README.md, "wait"). The keeper's pid, or -1 (errno).
pid_t clawflow_park_descriptor(int fd);

/* ---- flush.c ---- */

/// fsync(2) of every descriptor in fds, run by the caller and up to count - 1 helper threads
/// (at most 15, or 2 in a short-lived process; started when a call first needs them, kept,
/// signals blocked) so the device sees the flushes together; for entries with is_file[i] != 0
/// the data writeback is started first with sync_file_range(2).
/// errors[i] is 0 or the errno of fds[i]. Returns when every fsync has returned.
void clawflow_fsync_all(const int *fds, const int *is_file, int *errors, int count);

/// Says this process exits soon after its writes (a command, a supervisor): from now on
/// clawflow_fsync_all keeps at most 2 helper threads, and clawflow_flush_before_detached_fork
/// ends them.
void clawflow_flush_short_lived(void);

/// Called before a detached child is forked (spawn.c): in a short-lived process, ends the
/// helper threads and waits for them, so that its exit, soon after, does not wait for them to
/// be scheduled beside the new child; the next barrier starts new ones.
void clawflow_flush_before_detached_fork(void);

/* ---- spawn.c ---- */

/// Starts a command held before exec: fork(2) of a child with stdin from /dev/null, stdout
/// and stderr to stdout_fd (or /dev/null when it is -1), working directory cwd (NULL:
/// unchanged), every descriptor above 2 closed, default signal dispositions and an empty
/// mask, in a process group of its own, that waits for clawflow_release before it
/// execs `name` (looked up in PATH as execvp does, when it has no '/'), and exits (status 0)
/// without running anything if `*release` is closed or this process dies first. Returns 0
/// with `*pid` and `*release`, or an errno value (ENOENT, EACCES: not found; nothing started).
int clawflow_spawn_held(const char *name, char *const argv[], char *const envp[], const char *cwd,
                        int stdout_fd, pid_t *pid, int *release);

/// Lets the child of clawflow_spawn_held go on and closes
/// `release`; with `wait`, first waits until the child has (a command: until its exec).
/// Returns 0, or an errno value: EPIPE when the child is gone, or (with `wait`) the one that
/// stopped a command (chdir or exec; the child then exits with status 127). Never raises
/// SIGPIPE.
int clawflow_release(int release, int wait);


/* fork() for a detached supervisor. In the child (return 0): a session of its own, no
 * signal blocked, SIGINT/SIGTERM/SIGHUP/SIGQUIT at their defaults, stdin, stdout and stderr
 * on /dev/null, every other descriptor closed (the child must open what it needs again) but a
 * copy of `keep` (when not -1; close-on-exec, in `*kept`, else -1 there), thread name
 * "clawflow-superv". In the parent: the child's pid, or -1 (errno). */
pid_t clawflow_fork_supervisor(int keep, int *kept);

/* ---- spawn.c: hooks ---- */

/// memfd_create(2) with MFD_CLOEXEC: an anonymous file (a hook's stdin); -1 on error (errno).
int clawflow_memfd(const char *name);

/// Starts a notification hook with posix_spawn(3) (no copy of this process's memory): in a
/// process group of its own, every signal at its default and none blocked, stdin from stdin_fd
/// (or /dev/null when -1), stdout on /dev/null, stderr to stderr_fd (or /dev/null when -1),
/// every other descriptor closed, working directory cwd (NULL: unchanged), exec of `path`
/// (no PATH search) with argv and envp. Returns 0 with `*pid`, or an errno value: the spawn's,
/// or the exec's or chdir's in the child (ENOENT, EACCES, ...), when nothing was started.
int clawflow_spawn_hook(const char *path, char *const argv[], char *const envp[], const char *cwd,
                        int stdin_fd, int stderr_fd, pid_t *pid);

/// fork(2) of a detached child (a deliverer): in the child (return 0) a session of its own,
/// no signal blocked, SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGPIPE at their defaults, stdin, stdout
/// and stderr on /dev/null, every other descriptor closed, thread name "clawflow-notify". In
/// the parent: the child's pid, or -1 (errno).
pid_t clawflow_fork_detached(void);

#endif
