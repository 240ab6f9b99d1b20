/*
 * listfloor: the C floor of `clawflow flows list --json`: the same reads as clawflow (flows/
 * listed and sorted newest first; per flow its directory opened, a shared flock taken as
 * spool-layout.md's reader protocol asks, manifest.json opened, fstat'ed as a regular file and
 * read, tasks/ listed with getdents64 and every <id>.json read), each record parsed as JSON,
 * and the same document written to stdout: every flow's manifest members with its tasks
 * (sorted by createdAt, then taskId) and their taskSummary merged in, keys in byte order,
 * two-space indentation, then the count and the status counts. run.sh checks that its output
 * is byte for byte clawflow's. What it leaves out: the schema validation of each field, the
 * liveness check of command tasks, the error reporting of unreadable records (it stops).
 * One thread, no allocation per value beyond an arena reset for every flow.
 *
 *   listfloor SPOOL
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void die(const char *what, const char *name) {
    fprintf(stderr, "listfloor: %s: %s (%s)\n", what, name, errno ? strerror(errno) : "bad data");
    exit(1);
}

/* ---- growing byte buffers and an arena ------------------------------------------------ */

typedef struct { char *p; size_t n, cap; } Buf;

static void reserve(Buf *b, size_t more) {
    if (b->n + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->n + more) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) die("out of memory", "");
    b->cap = cap;
}
static void put(Buf *b, const void *s, size_t n) { reserve(b, n); memcpy(b->p + b->n, s, n); b->n += n; }
static void puts_(Buf *b, const char *s) { put(b, s, strlen(s)); }
static void putc_(Buf *b, char c) { reserve(b, 1); b->p[b->n++] = c; }

static Buf arena;
static void *alloc(size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (arena.n + n > arena.cap) die("arena full", "");
    void *p = arena.p + arena.n;
    arena.n += n;
    return p;
}

/* ---- JSON values ------------------------------------------------------------------------ */

enum { J_NULL, J_TRUE, J_FALSE, J_NUM, J_STR, J_ARR, J_OBJ };
typedef struct Value Value;
typedef struct { const char *key; size_t klen; Value *value; } Member;
struct Value {
    int kind;
    const char *s; size_t n;   /* a string's bytes (unescaped) or a number's text */
    Value **items; Member *members; size_t count;
};

typedef struct { const char *p, *end; const char *file; } Parser;

static void ws(Parser *ps) { while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\t' || *ps->p == '\r')) ps->p++; }
static void bad(Parser *ps) { errno = 0; die("not valid JSON", ps->file); }

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
static unsigned hex4(Parser *ps) {
    if (ps->end - ps->p < 4) bad(ps);
    unsigned v = 0;
    for (int i = 0; i < 4; i++) { int h = hexval(ps->p[i]); if (h < 0) bad(ps); v = v * 16 + (unsigned)h; }
    ps->p += 4;
    return v;
}

static void string(Parser *ps, const char **out, size_t *len) {
    ps->p++; /* the opening quote */
    const char *start = ps->p;
    while (ps->p < ps->end && *ps->p != '"' && *ps->p != '\\') {
        if ((unsigned char)*ps->p < 0x20) bad(ps);
        ps->p++;
    }
    if (ps->p >= ps->end) bad(ps);
    if (*ps->p == '"') { *out = start; *len = (size_t)(ps->p - start); ps->p++; return; }
    /* escapes: decoded into the arena (at most as long as the text) */
    char *d = alloc((size_t)(ps->end - start) + 4), *o = d;
    memcpy(o, start, (size_t)(ps->p - start));
    o += ps->p - start;
    while (ps->p < ps->end && *ps->p != '"') {
        char c = *ps->p++;
        if ((unsigned char)c < 0x20) bad(ps);
        if (c != '\\') { *o++ = c; continue; }
        if (ps->p >= ps->end) bad(ps);
        char e = *ps->p++;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned u = hex4(ps);
            if (u >= 0xD800 && u < 0xDC00) {
                if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u') bad(ps);
                ps->p += 2;
                unsigned lo = hex4(ps);
                if (lo < 0xDC00 || lo >= 0xE000) bad(ps);
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            } else if (u >= 0xDC00 && u < 0xE000) bad(ps);
            if (u < 0x80) *o++ = (char)u;
            else if (u < 0x800) { *o++ = (char)(0xC0 | u >> 6); *o++ = (char)(0x80 | (u & 0x3F)); }
            else if (u < 0x10000) { *o++ = (char)(0xE0 | u >> 12); *o++ = (char)(0x80 | ((u >> 6) & 0x3F)); *o++ = (char)(0x80 | (u & 0x3F)); }
            else { *o++ = (char)(0xF0 | u >> 18); *o++ = (char)(0x80 | ((u >> 12) & 0x3F)); *o++ = (char)(0x80 | ((u >> 6) & 0x3F)); *o++ = (char)(0x80 | (u & 0x3F)); }
            break;
        }
        default: bad(ps);
        }
    }
    if (ps->p >= ps->end) bad(ps);
    ps->p++;
    *out = d;
    *len = (size_t)(o - d);
}

static int keycmp(const char *a, size_t an, const char *b, size_t bn) {
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an < bn ? -1 : an > bn);
}
static int member_cmp(const void *x, const void *y) {
    const Member *a = x, *b = y;
    return keycmp(a->key, a->klen, b->key, b->klen);
}

static Value *value(Parser *ps, int depth) {
    if (depth > 512) bad(ps);
    ws(ps);
    if (ps->p >= ps->end) bad(ps);
    Value *v = alloc(sizeof *v);
    memset(v, 0, sizeof *v);
    char c = *ps->p;
    if (c == '{') {
        ps->p++;
        v->kind = J_OBJ;
        size_t cap = 32;
        Member *m = alloc(cap * sizeof *m);
        ws(ps);
        if (ps->p < ps->end && *ps->p == '}') { ps->p++; v->members = m; return v; }
        for (;;) {
            ws(ps);
            if (ps->p >= ps->end || *ps->p != '"') bad(ps);
            if (v->count == cap) { Member *n = alloc(2 * cap * sizeof *m); memcpy(n, m, cap * sizeof *m); m = n; cap *= 2; }
            string(ps, &m[v->count].key, &m[v->count].klen);
            ws(ps);
            if (ps->p >= ps->end || *ps->p++ != ':') bad(ps);
            m[v->count].value = value(ps, depth + 1);
            v->count++;
            ws(ps);
            if (ps->p >= ps->end) bad(ps);
            if (*ps->p == ',') { ps->p++; continue; }
            if (*ps->p == '}') { ps->p++; break; }
            bad(ps);
        }
        v->members = m;
        /* members in key order, as printed (records are written that way: usually no sort) */
        for (size_t i = 1; i < v->count; i++) {
            if (member_cmp(&m[i - 1], &m[i]) >= 0) { qsort(m, v->count, sizeof *m, member_cmp); break; }
        }
        return v;
    }
    if (c == '[') {
        ps->p++;
        v->kind = J_ARR;
        size_t cap = 16;
        Value **items = alloc(cap * sizeof *items);
        ws(ps);
        if (ps->p < ps->end && *ps->p == ']') { ps->p++; v->items = items; return v; }
        for (;;) {
            if (v->count == cap) { Value **n = alloc(2 * cap * sizeof *items); memcpy(n, items, cap * sizeof *items); items = n; cap *= 2; }
            items[v->count++] = value(ps, depth + 1);
            ws(ps);
            if (ps->p >= ps->end) bad(ps);
            if (*ps->p == ',') { ps->p++; continue; }
            if (*ps->p == ']') { ps->p++; break; }
            bad(ps);
        }
        v->items = items;
        return v;
    }
    if (c == '"') { v->kind = J_STR; string(ps, &v->s, &v->n); return v; }
    if (ps->end - ps->p >= 4 && !memcmp(ps->p, "null", 4)) { ps->p += 4; v->kind = J_NULL; return v; }
    if (ps->end - ps->p >= 4 && !memcmp(ps->p, "true", 4)) { ps->p += 4; v->kind = J_TRUE; return v; }
    if (ps->end - ps->p >= 5 && !memcmp(ps->p, "false", 5)) { ps->p += 5; v->kind = J_FALSE; return v; }
    if (c == '-' || (c >= '0' && c <= '9')) {
        const char *start = ps->p;
        while (ps->p < ps->end && strchr("+-0123456789.eE", *ps->p)) ps->p++;
        v->kind = J_NUM; v->s = start; v->n = (size_t)(ps->p - start);
        return v;
    }
    bad(ps);
    return NULL;
}

static Value *parse(const char *text, size_t n, const char *file) {
    Parser ps = { text, text + n, file };
    Value *v = value(&ps, 0);
    ws(&ps);
    if (ps.p != ps.end || v->kind != J_OBJ) bad(&ps);
    return v;
}

static Value *get(const Value *o, const char *key) {
    size_t kl = strlen(key), lo = 0, hi = o->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = keycmp(o->members[mid].key, o->members[mid].klen, key, kl);
        if (!c) return o->members[mid].value;
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}
static int is(const Value *v, const char *s) { return v && v->kind == J_STR && v->n == strlen(s) && !memcmp(v->s, s, v->n); }

/* ---- printing, as clawflow's JSON.write ------------------------------------------------- */

static void newline(Buf *b, int indent) {
    reserve(b, 1 + 2 * (size_t)indent);
    b->p[b->n++] = '\n';
    memset(b->p + b->n, ' ', 2 * (size_t)indent);
    b->n += 2 * (size_t)indent;
}

static void pstring(Buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    reserve(b, 6 * n + 2);
    char *o = b->p + b->n;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': *o++ = '\\'; *o++ = '"'; break;
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\r': *o++ = '\\'; *o++ = 'r'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        case '\b': *o++ = '\\'; *o++ = 'b'; break;
        case '\f': *o++ = '\\'; *o++ = 'f'; break;
        default:
            if (c < 0x20 || c == 0x7F) { *o++ = '\\'; *o++ = 'u'; *o++ = '0'; *o++ = '0'; *o++ = hex[c >> 4]; *o++ = hex[c & 15]; }
            else *o++ = (char)c;
        }
    }
    *o++ = '"';
    b->n = (size_t)(o - b->p);
}

static void pvalue(Buf *b, const Value *v, int indent);

static void pmember(Buf *b, const char *key, size_t klen, const Value *v, int first, int indent) {
    if (!first) putc_(b, ',');
    newline(b, indent + 1);
    pstring(b, key, klen);
    put(b, ": ", 2);
    pvalue(b, v, indent + 1);
}

static void pvalue(Buf *b, const Value *v, int indent) {
    switch (v->kind) {
    case J_NULL: puts_(b, "null"); break;
    case J_TRUE: puts_(b, "true"); break;
    case J_FALSE: puts_(b, "false"); break;
    case J_NUM: put(b, v->s, v->n); break;
    case J_STR: pstring(b, v->s, v->n); break;
    case J_ARR:
        if (!v->count) { puts_(b, "[]"); break; }
        putc_(b, '[');
        for (size_t i = 0; i < v->count; i++) {
            if (i) putc_(b, ',');
            newline(b, indent + 1);
            pvalue(b, v->items[i], indent + 1);
        }
        newline(b, indent);
        putc_(b, ']');
        break;
    case J_OBJ:
        if (!v->count) { puts_(b, "{}"); break; }
        putc_(b, '{');
        for (size_t i = 0; i < v->count; i++) pmember(b, v->members[i].key, v->members[i].klen, v->members[i].value, i == 0, indent);
        newline(b, indent);
        putc_(b, '}');
        break;
    }
}

/* ---- the spool -------------------------------------------------------------------------- */

static char filebuf[1 << 20];

/* Reads `name` in `dir` (O_NOFOLLOW | O_NONBLOCK; fstat'ed unless the listing said regular). */
static size_t readfile(int dir, const char *name, int known_regular, char **out) {
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) die("open", name);
    size_t want = 4095;
    if (!known_regular) {
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) die("not a regular file", name);
        want = (size_t)st.st_size;
    }
    char *p = alloc(want + 1);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, p + n, want + 1 - n);
        if (r < 0) { if (errno == EINTR) continue; die("read", name); }
        n += (size_t)r;
        if (r == 0 || n < want + 1) break;
        /* larger than thought: read the rest through the static buffer */
        char *q = alloc(n + sizeof filebuf);
        memcpy(q, p, n);
        p = q;
        want = n + sizeof filebuf - 1;
    }
    close(fd);
    *out = p;
    return n;
}

struct linux_dirent64 { unsigned long long d_ino; long long d_off; unsigned short d_reclen; unsigned char d_type; char d_name[]; };

typedef struct { Value *record; const Value *created, *id; } Task;

static int task_cmp(const void *x, const void *y) {
    const Task *a = x, *b = y;
    int c = keycmp(a->created->s, a->created->n, b->created->s, b->created->n);
    return c ? c : keycmp(a->id->s, a->id->n, b->id->s, b->id->n);
}

static int id_cmp_desc(const void *x, const void *y) { return strcmp(*(char *const *)y, *(char *const *)x); }

static const char *task_statuses[] = { "cancelled", "failed", "lost", "queued", "running", "succeeded", "timed_out" };

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: listfloor SPOOL\n"); return 64; }
    arena.cap = 64 << 20;
    arena.p = malloc(arena.cap);
    int root = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) die("open", argv[1]);
    int flowsfd = openat(root, "flows", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (flowsfd < 0) die("open", "flows");

    /* flows/, newest first (UUIDv7 ids sort oldest first) */
    size_t nids = 0, capids = 1024;
    char **ids = malloc(capids * sizeof *ids);
    static char dents[1 << 16];
    for (;;) {
        long n = syscall(SYS_getdents64, flowsfd, dents, sizeof dents);
        if (n < 0) die("getdents64", "flows");
        if (n == 0) break;
        for (long off = 0; off < n;) {
            struct linux_dirent64 *d = (void *)(dents + off);
            off += d->d_reclen;
            if (d->d_name[0] == '.' || strlen(d->d_name) != 36) continue;
            if (nids == capids) ids = realloc(ids, (capids *= 2) * sizeof *ids);
            ids[nids++] = strdup(d->d_name);
        }
    }
    qsort(ids, nids, sizeof *ids, id_cmp_desc);

    Buf out = { 0 };
    long count = 0, active = 0, terminal = 0, cancel_requested = 0;
    static const char *flow_statuses[] = { "blocked", "cancelled", "failed", "lost", "queued", "running", "succeeded", "waiting" };
    long by_status[8] = { 0 };
    Task *tasks = malloc(4096 * sizeof *tasks);
    for (size_t f = 0; f < nids; f++) {
        arena.n = 0;
        int dir = openat(flowsfd, ids[f], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dir < 0) die("open", ids[f]);
        if (flock(dir, LOCK_SH) < 0) die("flock", ids[f]);
        char *text;
        size_t n = readfile(dir, "manifest.json", 0, &text);
        Value *flow = parse(text, n, ids[f]);
        if (!is(get(flow, "flowId"), ids[f])) die("manifest names another flow", ids[f]);
        size_t ntasks = 0;
        int tdir = openat(dir, "tasks", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (tdir < 0) die("open tasks of", ids[f]);
        for (;;) {
            long r = syscall(SYS_getdents64, tdir, dents, sizeof dents);
            if (r < 0) die("getdents64", ids[f]);
            if (r == 0) break;
            for (long off = 0; off < r;) {
                struct linux_dirent64 *d = (void *)(dents + off);
                off += d->d_reclen;
                size_t len = strlen(d->d_name);
                if (d->d_name[0] == '.' || len != 41 || strcmp(d->d_name + 36, ".json")) continue;
                n = readfile(tdir, d->d_name, d->d_type == DT_REG, &text);
                Value *t = parse(text, n, d->d_name);
                Value *created = get(t, "createdAt"), *id = get(t, "taskId");
                if (!created || created->kind != J_STR || !id || id->kind != J_STR || id->n != 36 || memcmp(id->s, d->d_name, 36)) die("bad task record", d->d_name);
                if (ntasks == 4096) die("too many tasks in", ids[f]);
                tasks[ntasks++] = (Task){ t, created, id };
            }
        }
        close(tdir);
        close(dir); /* and the lock */
        if (ntasks > 1) qsort(tasks, ntasks, sizeof *tasks, task_cmp);

        /* the task summary */
        long t_active = 0, t_terminal = 0, t_failures = 0, t_by[7] = { 0 };
        for (size_t i = 0; i < ntasks; i++) {
            const Value *s = get(tasks[i].record, "status");
            int k = -1;
            for (int j = 0; j < 7; j++) if (is(s, task_statuses[j])) k = j;
            if (k < 0) die("bad task status in", ids[f]);
            t_by[k]++;
            if (k == 3 || k == 4) t_active++; else t_terminal++;
            if (k == 1 || k == 2 || k == 6) t_failures++;
        }
        /* the flow's counts */
        const Value *fs = get(flow, "status");
        int k = -1;
        for (int j = 0; j < 8; j++) if (is(fs, flow_statuses[j])) k = j;
        if (k < 0) die("bad flow status in", ids[f]);
        int is_terminal = k == 1 || k == 2 || k == 3 || k == 6 || (k == 0 && get(flow, "endedAt") && get(flow, "endedAt")->kind != J_NULL);
        count++;
        by_status[k]++;
        if (is_terminal) terminal++;
        else { active++; const Value *c = get(flow, "cancelRequestedAt"); if (c && c->kind != J_NULL) cancel_requested++; }

        /* the flow: its members with taskSummary and tasks merged in, at indent 2 */
        put(&out, count == 1 ? "\n    " : ",\n    ", count == 1 ? 5 : 6);
        putc_(&out, '{');
        static const char *extra[] = { "taskSummary", "tasks" };
        size_t i = 0, j = 0;
        int first = 1;
        char num[32];
        while (i < flow->count || j < 2) {
            int take_extra = j < 2 && (i == flow->count || keycmp(flow->members[i].key, flow->members[i].klen, extra[j], strlen(extra[j])) >= 0);
            if (!take_extra) {
                pmember(&out, flow->members[i].key, flow->members[i].klen, flow->members[i].value, first, 2);
                i++;
            } else {
                if (i < flow->count && !keycmp(flow->members[i].key, flow->members[i].klen, extra[j], strlen(extra[j]))) i++;
                if (!first) putc_(&out, ',');
                newline(&out, 3);
                pstring(&out, extra[j], strlen(extra[j]));
                put(&out, ": ", 2);
                if (j == 0) {
                    putc_(&out, '{');
                    newline(&out, 4); puts_(&out, "\"active\": "); snprintf(num, sizeof num, "%ld", t_active); puts_(&out, num); putc_(&out, ',');
                    newline(&out, 4); puts_(&out, "\"byStatus\": ");
                    int any = 0;
                    for (int s = 0; s < 7; s++) {
                        if (!t_by[s]) continue;
                        putc_(&out, any ? ',' : '{');
                        newline(&out, 5); pstring(&out, task_statuses[s], strlen(task_statuses[s])); put(&out, ": ", 2);
                        snprintf(num, sizeof num, "%ld", t_by[s]); puts_(&out, num);
                        any = 1;
                    }
                    if (any) { newline(&out, 4); putc_(&out, '}'); } else puts_(&out, "{}");
                    putc_(&out, ',');
                    newline(&out, 4); puts_(&out, "\"failures\": "); snprintf(num, sizeof num, "%ld", t_failures); puts_(&out, num); putc_(&out, ',');
                    newline(&out, 4); puts_(&out, "\"terminal\": "); snprintf(num, sizeof num, "%ld", t_terminal); puts_(&out, num); putc_(&out, ',');
                    newline(&out, 4); puts_(&out, "\"total\": "); snprintf(num, sizeof num, "%zu", ntasks); puts_(&out, num);
                    newline(&out, 3); putc_(&out, '}');
                } else if (!ntasks) {
                    puts_(&out, "[]");
                } else {
                    putc_(&out, '[');
                    for (size_t t = 0; t < ntasks; t++) {
                        if (t) putc_(&out, ',');
                        newline(&out, 4);
                        pvalue(&out, tasks[t].record, 4);
                    }
                    newline(&out, 3);
                    putc_(&out, ']');
                }
                j++;
            }
            first = 0;
        }
        newline(&out, 2);
        putc_(&out, '}');
    }

    Buf doc = { 0 };
    char num[64];
    snprintf(num, sizeof num, "{\n  \"count\": %ld,\n  \"flows\": ", count);
    puts_(&doc, num);
    fwrite(doc.p, 1, doc.n, stdout);
    if (count) { fputc('[', stdout); fwrite(out.p, 1, out.n, stdout); fputs("\n  ]", stdout); } else fputs("[]", stdout);
    long total = count;
    fprintf(stdout,
            ",\n  \"status\": {\n    \"active\": %ld,\n    \"blocked\": %ld,\n    \"cancelRequested\": %ld,\n    \"cancelled\": %ld,\n"
            "    \"failed\": %ld,\n    \"lost\": %ld,\n    \"queued\": %ld,\n    \"running\": %ld,\n    \"succeeded\": %ld,\n"
            "    \"terminal\": %ld,\n    \"total\": %ld,\n    \"waiting\": %ld\n  }\n}\n",
            active, by_status[0], cancel_requested, by_status[1], by_status[2], by_status[3], by_status[4], by_status[5], by_status[6],
            terminal, total, by_status[7]);
    return 0;
}
