/*
 * timeit: wall-clock timing of commands, interleaved so that a change in machine load
 * during the measurement hits every command alike (the ratios stay fair).
 *
 *   timeit WARMUP RUNS -- cmdA [args...] [::: cmdB [args...] ...]
 *
 * Each command is run WARMUP times untimed, then RUNS times timed, in rounds A B A B ...
 * Each run is fork + execvp with stdin and stdout on /dev/null (stderr is kept, so failures
 * show); a run that exits non-zero stops everything (exit 1). With TIMEIT_FINDINGS_OK=1 in
 * the environment an exit status of 1 counts as success and stderr goes to /dev/null too
 * (for `clawflow audit`, which exits 1 when it reports findings).
 *
 * Output, one line per command, in the order given:
 *   median_s min_s max_s mean_s runs user_s sys_s
 * where user_s/sys_s are the medians of the CPU seconds of the timed runs (wait4 rusage).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXCMDS 8

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run(char **argv, double *wall, double *user, double *sys) {
    double t0 = now();
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return -1; }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        if (getenv("TIMEIT_FINDINGS_OK")) dup2(null, 2);
        execvp(argv[0], argv);
        perror(argv[0]);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) { perror("wait4"); return -1; }
    *wall = now() - t0;
    *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    int ok_max = getenv("TIMEIT_FINDINGS_OK") ? 1 : 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) > ok_max) {
        fprintf(stderr, "timeit: %s exited with status %d\n", argv[0],
                WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: timeit WARMUP RUNS -- cmdA [args...] [::: cmdB [args...] ...]\n");
        return 64;
    }
    int warm = atoi(argv[1]), runs = atoi(argv[2]);
    if (runs < 1 || warm < 0) { fprintf(stderr, "timeit: bad counts\n"); return 64; }

    char **cmds[MAXCMDS];
    int ncmds = 0;
    cmds[ncmds++] = argv + 4;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], ":::") == 0) {
            argv[i] = NULL; /* ends the previous command's argv */
            if (i + 1 >= argc || ncmds == MAXCMDS) { fprintf(stderr, "timeit: bad command list\n"); return 64; }
            cmds[ncmds++] = argv + i + 1;
        }
    }

    double w, u, s;
    for (int i = 0; i < warm; i++)
        for (int c = 0; c < ncmds; c++)
            if (run(cmds[c], &w, &u, &s) != 0) return 1;

    double *wall[MAXCMDS], *user[MAXCMDS], *sys[MAXCMDS];
    for (int c = 0; c < ncmds; c++) {
        wall[c] = calloc((size_t)runs, sizeof(double));
        user[c] = calloc((size_t)runs, sizeof(double));
        sys[c] = calloc((size_t)runs, sizeof(double));
    }
    for (int i = 0; i < runs; i++)
        for (int c = 0; c < ncmds; c++)
            if (run(cmds[c], &wall[c][i], &user[c][i], &sys[c][i]) != 0) return 1;

    for (int c = 0; c < ncmds; c++) {
        double sum = 0, lo = 1e30, hi = 0;
        for (int i = 0; i < runs; i++) {
            sum += wall[c][i];
            if (wall[c][i] < lo) lo = wall[c][i];
            if (wall[c][i] > hi) hi = wall[c][i];
        }
        double med = median(wall[c], runs), mu = median(user[c], runs), ms = median(sys[c], runs);
        printf("%.6f %.6f %.6f %.6f %d %.6f %.6f\n", med, lo, hi, sum / runs, runs, mu, ms);
    }
    return 0;
}
