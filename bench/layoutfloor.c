/*
 * layoutfloor: what the spool layout itself costs to write durably, without clawflow.
 *
 *   layoutfloor DIR N    (DIR must not exist; it is created, and left for the caller to delete)
 *
 * Times N rounds of each of three writes, interleaved round by round so that all three see
 * the same state of the disk, and prints for each the median and p99 until it is durable and
 * until its result is visible (renamed into place: what droplat's waiter sees), and the
 * medians' ratios to the first:
 *   raw      one durable write: temp file, write 350 bytes, fsync, rename, fsync(dir) —
 *            the write in droplat's raw baseline;
 *   layout   the least a new one-task flow of a new owner key needs by spec §4: a staging
 *            directory with tasks/ and three files (task, manifest.json, events.jsonl), all
 *            fsynced at once from helper threads (barrier 1); the rename into flows/ and
 *            the owner link made in place; flows/ and owners/ fsynced together (barrier 2) —
 *            5 new inodes, 7 fsyncs in two rounds;
 *   indexed  the same flow as clawflow writes it for a drop (spool-layout.md, "Writing",
 *            "Indexes" and "Drop box"): "layout" plus the task-index entry, the run-index
 *            and owner-index directories of a new run id and owner key with their entries,
 *            and the drop's applied record, all flushed in barrier 1 — 10 new inodes,
 *            13 fsyncs, still two rounds.
 * Nothing here is clawflow code: it bounds from below what any implementation of the layout
 * pays on this disk.
 */
#define _GNU_SOURCE
#include "floor.h"

static struct floor_spool sp;
static double t0, t_visible; /* start of the current write, and when its result became visible */

static void raw(int i) {
    char name[64], temp[80];
    snprintf(name, sizeof name, "raw-%d", i);
    snprintf(temp, sizeof temp, ".%s.tmp", name);
    int fd = floor_new_file(sp.tmp, temp);
    fsync(fd);
    renameat(sp.tmp, temp, sp.flows, name);
    t_visible = floor_now();
    fsync(sp.flows);
    close(fd);
}

static void flow(int i, int indexed) {
    char id[64];
    snprintf(id, sizeof id, "%s-%d", indexed ? "indexed" : "layout", i);
    floor_model_flow(&sp, id, indexed, &t_visible);
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: layoutfloor DIR N\n"); return 2; }
    int n = atoi(argv[2]);
    if (n < 1) return 2;
    floor_spool_make(&sp, argv[1]);
    double *lat[3], *vis[3];
    for (int m = 0; m < 3; m++) {
        lat[m] = malloc(n * sizeof(double));
        vis[m] = malloc(n * sizeof(double));
    }
    for (int i = 0; i < n; i++) {
        for (int m = 0; m < 3; m++) {
            t0 = floor_now();
            if (m == 0) raw(i); else flow(i, m == 2);
            lat[m][i] = floor_now() - t0;
            vis[m][i] = t_visible - t0;
        }
    }
    const char *label[] = {"raw (1 durable write)", "layout (7 fsyncs, 2 rounds)", "indexed (13 fsyncs, 2 rounds)"};
    const char *key[] = {"raw", "layout", "indexed"};
    double med[3], vmed[3], p99[3], vp99[3];
    int i99 = (int)(0.99 * n + 0.999999) - 1; /* nearest rank */
    if (i99 < 0) i99 = 0;
    for (int m = 0; m < 3; m++) {
        qsort(lat[m], n, sizeof(double), floor_cmp);
        qsort(vis[m], n, sizeof(double), floor_cmp);
        med[m] = lat[m][n / 2];
        p99[m] = lat[m][i99];
        vmed[m] = vis[m][n / 2];
        vp99[m] = vis[m][i99];
    }
    for (int m = 0; m < 3; m++)
        printf("%-30s durable: median %.3f ms (%.2fx raw), p99 %.3f ms; visible (renamed into place): median %.3f ms (%.2fx raw), p99 %.3f ms\n",
               label[m], med[m] * 1e3, med[m] / med[0], p99[m] * 1e3, vmed[m] * 1e3, vmed[m] / vmed[0], vp99[m] * 1e3);
    printf("RESULT");
    for (int m = 0; m < 3; m++)
        printf(" %s_ms=%.3f %s_p99_ms=%.3f %s_visible_ms=%.3f %s_visible_p99_ms=%.3f", key[m], med[m] * 1e3, key[m], p99[m] * 1e3,
               key[m], vmed[m] * 1e3, key[m], vp99[m] * 1e3);
    printf("\n");
    return 0;
}
