#!/usr/bin/env python3
"""Flush cost of clawflow's writes on ext4 with and without a journal (bench/README.md, "Power cuts").

For each binary given (LABEL=PATH) and each kind of filesystem, on a fresh loop-mounted ext4
image whose file lives in --dir (default /var/tmp: on the machine's disk, so that a device
flush is a real one), it counts with `strace -f -c` the fsync, fdatasync and syncfs calls of
a few operations, then times --runs of three of them, the binaries alternating, each on a
spool of its own on the same filesystem (median and p90, milliseconds):

  add      clawflow tasks add --owner NEW --run-id R (a new one-task flow)
  set      clawflow tasks set ID --status running (a transition; timed with a new --progress each time)
  run      clawflow run --owner NEW -- true (with its supervisor, which records running and succeeded)
  drop     one new-flow drop renamed into incoming/new, then clawflow ingest
  update   one task-update drop for an existing task, then clawflow ingest
  burst32  32 new-flow drops, then one clawflow ingest

With --droplat (cc -O2 -o droplat bench/droplat.c) it also times `clawflow watch` of each
binary: the drop -> applied latency of --drops sequential new-flow drops (twice per binary,
alternating) and the rate of a burst of --burst drops.

Needs root and strace. Usage: flushcost.py [--runs N] [--dir DIR] [--droplat PATH] LABEL=BINARY [LABEL=BINARY ...]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw)


class Fs:
    def __init__(self, kind, parent):
        self.dir = tempfile.mkdtemp(prefix="clawflow-flushcost-", dir=parent)
        self.image = os.path.join(self.dir, "fs.img")
        self.mnt = os.path.join(self.dir, "mnt")
        with open(self.image, "wb") as f:
            f.truncate(1024 * 1024 * 1024)
        sh(["mkfs.ext4", "-q", "-F", "-b", "4096", "-I", "256", "-i", "4096"] + (["-O", "^has_journal"] if kind == "nojournal" else []) + [self.image])
        self.loop = sh(["losetup", "-f", "--show", self.image]).stdout.strip()
        os.makedirs(self.mnt)
        sh(["mount", "-o", "noatime", self.loop, self.mnt])

    def close(self):
        subprocess.run(["umount", self.mnt])
        subprocess.run(["losetup", "-d", self.loop])
        subprocess.run(["rm", "-rf", self.dir])


def counts(cmd, env):
    """fsync, fdatasync and syncfs calls of cmd (with its children)."""
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as trace:
        subprocess.run(["strace", "-f", "-c", "-e", "trace=fsync,fdatasync,syncfs", "-o", trace.name, "--"] + cmd,
                       capture_output=True, text=True, env=env, check=True)
        c = {"fsync": 0, "fdatasync": 0, "syncfs": 0}
        for line in trace.read().splitlines():
            parts = line.split()  # % time, seconds, usecs/call, calls, [errors,] syscall
            if len(parts) >= 5 and parts[-1] in c:
                c[parts[-1]] = int(parts[3])
    return c


def drop(spool, name, body):
    tmp = os.path.join(spool, "incoming", "tmp", name)
    with open(tmp, "w") as f:
        f.write(json.dumps(body) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(spool, "incoming", "new", name))


def measure(binaries, kind, args):
    """Counts per binary, then timings with the binaries alternating, each on its own spool
    on one filesystem, so that they see the same state of the disk."""
    fs = Fs(kind, args.dir)
    try:
        env = dict(os.environ, NO_COLOR="1")
        results = {}
        for label, binary in binaries:
            spool = os.path.join(fs.mnt, label)
            cf = [binary, "--spool", spool]
            sh(cf + ["init"])
            out = {}
            out["add"] = counts(cf + ["tasks", "add", "--owner", "c-add", "--runtime", "cron", "--run-id", "c-add"], env)
            task = sh(cf + ["tasks", "add", "--owner", "c-set", "--runtime", "cron"]).stdout.strip()
            out["set"] = counts(cf + ["tasks", "set", task, "--status", "running"], env)
            out["run"] = counts(cf + ["run", "--owner", "c-run", "--", "true"], env)
            drop(spool, "c-drop.json", {"kind": "task", "ownerKey": "c-drop", "runtime": "cron", "taskId": "0b5f7f3e-1d2c-4b8a-9e6f-000000000001"})
            out["drop"] = counts(cf + ["ingest"], env)
            drop(spool, "c-upd.json", {"kind": "task-update", "taskId": "0b5f7f3e-1d2c-4b8a-9e6f-000000000001", "status": "running"})
            out["update"] = counts(cf + ["ingest"], env)
            for i in range(32):
                drop(spool, f"c-burst-{i}.json", {"kind": "task", "ownerKey": f"c-burst-{i}", "runtime": "cron"})
            out["burst32"] = counts(cf + ["ingest"], env)
            out["times"] = {"add": [], "set": [], "drop": []}
            out["task"] = task
            results[label] = out
        for i in range(args.runs):
            for label, binary in binaries:
                spool = os.path.join(fs.mnt, label)
                cf = [binary, "--spool", spool]
                times = results[label]["times"]
                t = time.perf_counter()
                sh(cf + ["tasks", "add", "--owner", f"t-{i}", "--runtime", "cron", "--run-id", f"t-{i}"])
                times["add"].append(time.perf_counter() - t)
                t = time.perf_counter()
                sh(cf + ["tasks", "set", results[label]["task"], "--status", "running", "--progress", f"step {i}"])
                times["set"].append(time.perf_counter() - t)
                drop(spool, f"t-{i}.json", {"kind": "task", "ownerKey": f"d-{i}", "runtime": "cron"})
                t = time.perf_counter()
                sh(cf + ["ingest"])
                times["drop"].append(time.perf_counter() - t)
        for label, binary in binaries:
            out = results[label]
            for what, xs in out.pop("times").items():
                xs.sort()
                out[f"{what} ms"] = (statistics.median(xs) * 1000, xs[int(len(xs) * 0.9)] * 1000)
            out["fsck"] = subprocess.run([binary, "--spool", os.path.join(fs.mnt, label), "fsck"], capture_output=True).returncode
        return results
    finally:
        fs.close()


def watcher_latency(binaries, kind, args):
    """droplat (bench/droplat.c) against `clawflow watch` of each binary: drop -> applied
    latency of --drops sequential new-flow drops, twice per binary in alternation, then a burst
    of --burst drops; each on a new spool on one filesystem."""
    fs = Fs(kind, args.dir)
    out = {label: {"median": [], "p99": [], "burst": None} for label, _ in binaries}
    try:
        def with_watcher(label, binary, spool, droplat_args):
            sh([binary, "--spool", spool, "init"])
            w = subprocess.Popen([binary, "--spool", spool, "watch", "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(0.3)
                r = subprocess.run([args.droplat] + droplat_args, capture_output=True, text=True)
                if r.returncode != 0:
                    raise RuntimeError(f"droplat {' '.join(droplat_args)} ({label}) exited {r.returncode}: {r.stderr.strip()}")
            finally:
                w.terminate()
                w.wait()
            return dict(kv.split("=") for kv in r.stdout.split("RESULT ", 1)[1].split())
        for round in range(2):
            for label, binary in binaries:
                spool = os.path.join(fs.mnt, f"lat-{label}-{round}")
                res = with_watcher(label, binary, spool, ["clawflow", spool, str(args.drops)])
                out[label]["median"].append(float(res["median_ms"]))
                out[label]["p99"].append(float(res["p99_ms"]))
        for label, binary in binaries:
            spool = os.path.join(fs.mnt, f"burst-{label}")
            res = with_watcher(label, binary, spool, ["burst", spool, str(args.burst)])
            out[label]["burst"] = float(res["rate"])
        return out
    finally:
        fs.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--dir", default="/var/tmp")
    p.add_argument("--droplat", default=None, help="a built bench/droplat.c: also time a watcher of each binary")
    p.add_argument("--drops", type=int, default=300)
    p.add_argument("--burst", type=int, default=1000)
    p.add_argument("binaries", nargs="+", help="LABEL=PATH")
    args = p.parse_args()
    binaries = [tuple(spec.split("=", 1)) for spec in args.binaries]
    for kind in ("journal", "nojournal"):
        results = measure(binaries, kind, args)
        for label, _ in binaries:
            m = results[label]
            calls = "; ".join(f"{op} {c['fsync']}+{c['syncfs']}s" for op, c in m.items() if isinstance(c, dict))
            print(f"{kind:9} {label:8} fsync+syncfs calls: {calls}")
        for label, _ in binaries:
            m = results[label]
            print(f"{kind:9} {label:8} median (p90), {args.runs} runs alternating: tasks add {m['add ms'][0]:.2f} ms ({m['add ms'][1]:.2f}); "
                  f"tasks set {m['set ms'][0]:.2f} ms ({m['set ms'][1]:.2f}); drop + ingest {m['drop ms'][0]:.2f} ms ({m['drop ms'][1]:.2f}); "
                  f"fsck exit {m['fsck']}", flush=True)
        if args.droplat:
            lat = watcher_latency(binaries, kind, args)
            for label, _ in binaries:
                m = lat[label]
                print(f"{kind:9} {label:8} watcher, {args.drops} sequential new-flow drops (two runs): median "
                      f"{' / '.join(f'{x:.2f}' for x in m['median'])} ms, p99 {' / '.join(f'{x:.2f}' for x in m['p99'])} ms; "
                      f"burst of {args.burst}: {m['burst']:.0f} drops/s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
