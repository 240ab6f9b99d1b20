/* The threads that issue a write barrier's fsyncs together (clawflow_fsync_all). */
#define _GNU_SOURCE
#include "CSystemShims.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <signal.h>
#include <unistd.h>

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
 * bench/layoutfloor.c limited to 4 at a time, a barrier of 10 took 12-25% longer.
 *
 * A process that exits soon after its writes (clawflow_flush_short_lived: a command, a
 * supervisor) keeps at most 2 helpers and ends them before it forks a detached child. Its
 * exit would otherwise wait until each helper had been scheduled to die, while the child it
 * has just forked competes for the CPUs: 500 `run`s in a row measured 0.78 ms from the exit
 * of a `run` with 8 helpers to its parent's wait returning, 0.48 ms with 2 ended before the
 * fork (which costs 0.07 ms), against a 9-object barrier up to 0.15 ms longer on 3 threads
 * than on 9 (bench/README.md, issue 20's fifth round). */
#define CLAWFLOW_FLUSH_THREADS_MAX 15
#define CLAWFLOW_FLUSH_SHORT_LIVED_MAX 2
static pthread_mutex_t flush_callers = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t flush_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t flush_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t flush_done = PTHREAD_COND_INITIALIZER;
static struct clawflow_flush_job *flush_current;
static int flush_threads_started; /* helpers running */
static pthread_t flush_threads[CLAWFLOW_FLUSH_THREADS_MAX];
static int flush_short_lived; /* at most CLAWFLOW_FLUSH_SHORT_LIVED_MAX helpers, ended before a detached fork */
static int flush_ending;      /* helpers are told to end */

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
        while (!flush_ending && (flush_current == NULL || flush_current->next >= flush_current->count))
            pthread_cond_wait(&flush_work, &flush_mutex);
        if (flush_ending) break;
        clawflow_flush_run(flush_current);
    }
    pthread_mutex_unlock(&flush_mutex);
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
    int most = flush_short_lived ? CLAWFLOW_FLUSH_SHORT_LIVED_MAX : CLAWFLOW_FLUSH_THREADS_MAX;
    int wanted = count - 1 < most ? count - 1 : most;
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
            flush_threads[flush_threads_started++] = thread;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    flush_current = &job;
    /* Wake only the helpers this job can use (the caller takes one item itself), with the
     * mutex let go first: a helper woken while the caller holds it runs only to block on it,
     * and on a busy machine the caller may then wait a time slice for its CPU back (a perf
     * trace showed 2.6 ms). A helper checks for the job under the mutex before it sleeps, so
     * none misses it. */
    int wake = count - 1 < flush_threads_started ? count - 1 : flush_threads_started;
    pthread_mutex_unlock(&flush_mutex);
    for (int t = 0; t < wake; t++) pthread_cond_signal(&flush_work);
    pthread_mutex_lock(&flush_mutex);
    clawflow_flush_run(&job);
    while (job.finished < job.count) pthread_cond_wait(&flush_done, &flush_mutex);
    flush_current = NULL;
    pthread_mutex_unlock(&flush_mutex);
    pthread_mutex_unlock(&flush_callers);
}

void clawflow_flush_short_lived(void) {
    pthread_mutex_lock(&flush_callers);
    flush_short_lived = 1;
    pthread_mutex_unlock(&flush_callers);
}

void clawflow_flush_before_detached_fork(void) {
    pthread_mutex_lock(&flush_callers); /* no barrier is running */
    if (flush_short_lived && flush_threads_started > 0) {
        pthread_mutex_lock(&flush_mutex);
        flush_ending = 1;
        pthread_cond_broadcast(&flush_work);
        pthread_mutex_unlock(&flush_mutex);
        for (int t = 0; t < flush_threads_started; t++) pthread_join(flush_threads[t], NULL);
        flush_threads_started = 0; /* the next barrier starts new ones */
        flush_ending = 0;
    }
    pthread_mutex_unlock(&flush_callers);
}
