#!/usr/bin/env python3
"""Counts the durable-write system calls in an `strace -ff -y -o PREFIX` trace.

    stracecount.py SPOOL_ROOT TRACE_FILE...

Prints what was replaced (renames), flushed (fsync family) and appended to events.jsonl,
one call per line with paths relative to SPOOL_ROOT, then one machine-readable line:

    RESULT renames=2 fsync=4 fdatasync=1 othersync=0 appends=1 append_bytes=261 ...

Only successful calls count. Run strace with -ff (one file per thread), so no call is split
into "unfinished ... resumed" halves, and with -y, so every fd carries its path.
"""
import re
import sys

CALL = re.compile(r"^(?P<name>[a-z_0-9]+)\((?P<args>.*)\)\s+=\s+(?P<ret>-?\d+)")
FD_PATH = re.compile(r"^-?\d+<(?P<path>[^>]*)>")
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')

RENAMES = {"rename", "renameat", "renameat2"}
FSYNC = {"fsync"}
FDATASYNC = {"fdatasync"}
OTHER_SYNC = {"sync", "syncfs", "sync_file_range", "msync"}
WRITES = {"write", "writev", "pwrite64", "pwritev", "pwritev2"}


def rel(path, root):
    if path == root:
        return "."
    if path.startswith(root + "/"):
        return path[len(root) + 1:]
    return path


def first_fd_path(args):
    m = FD_PATH.match(args)
    return m.group("path") if m else None


def fd_paths(args):
    return re.findall(r"-?\d+<([^>]*)>", args)


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 64
    root = sys.argv[1].rstrip("/")
    counts = {"renames": 0, "fsync": 0, "fdatasync": 0, "othersync": 0, "appends": 0,
              "append_bytes": 0, "other_spool_writes": 0, "created_files": 0, "symlinks": 0}
    lines = []
    for trace in sys.argv[2:]:
        with open(trace, encoding="utf-8", errors="replace") as f:
            for raw in f:
                m = CALL.match(raw.strip())
                if not m or int(m.group("ret")) < 0:
                    continue
                name, args, ret = m.group("name"), m.group("args"), int(m.group("ret"))
                if name in RENAMES:
                    names = QUOTED.findall(args)
                    dirs = fd_paths(args)
                    old, new = (names[0], names[-1]) if len(names) >= 2 else ("?", "?")
                    where = rel(dirs[-1], root) + "/" if dirs else ""
                    counts["renames"] += 1
                    lines.append(f"  rename     {where}{old} -> {new}")
                elif name in FSYNC or name in FDATASYNC or name in OTHER_SYNC:
                    key = "fsync" if name in FSYNC else "fdatasync" if name in FDATASYNC else "othersync"
                    counts[key] += 1
                    p = first_fd_path(args)
                    lines.append(f"  {name:<10} {rel(p, root) if p else args}")
                elif name in WRITES:
                    p = first_fd_path(args)
                    if p and p.endswith("/events.jsonl") and p.startswith(root + "/"):
                        counts["appends"] += 1
                        counts["append_bytes"] += ret
                        lines.append(f"  append     {rel(p, root)} ({ret} bytes)")
                    elif p and p.startswith(root + "/"):
                        counts["other_spool_writes"] += 1
                        lines.append(f"  write      {rel(p, root)} ({ret} bytes)")
                elif name == "openat" and "O_CREAT" in args:
                    p = re.search(r"=\s+-?\d+<([^>]*)>", raw)
                    if p and p.group(1).startswith(root + "/") and not p.group(1).endswith("/events.jsonl"):
                        counts["created_files"] += 1
                elif name == "symlinkat":
                    names = QUOTED.findall(args)
                    dirs = fd_paths(args)
                    counts["symlinks"] += 1
                    where = rel(dirs[0], root) + "/" if dirs else ""
                    lines.append(f"  symlink    {where}{names[-1] if names else '?'} -> {names[0] if names else '?'}")
    print("\n".join(lines))
    print("RESULT " + " ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
