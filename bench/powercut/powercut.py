#!/usr/bin/env python3
"""Power-cut harness for clawflow (bench/README.md, "Power cuts").

Each cut: a fresh ext4 image (with or without a journal) is loop-mounted, a spool is made
on it, and a workload runs against it: concurrent CLI writers (`tasks add`, `tasks set`),
`run` jobs, a `watch` applying Maildir drops that droppers write, and `maintenance --apply`
now and then. After a random delay the filesystem is shut down with EXT4_IOC_SHUTDOWN
(EXT4_GOING_FLAGS_NOLOGFLUSH: nothing more reaches the device, the journal is not
flushed) and the image file is copied at once, before anything is unmounted: unmounting,
even after the shutdown, writes back metadata still pending, and on an ext4 without a
journal that hides exactly the states a power cut leaves. The copy gets `e2fsck -p`
(`-fy` when -p refuses), is mounted, and the next clawflow commands recover it
(`ingest`, `fsck --repair`; then `fsck` must exit 0). The checker then compares the
spool with what the workload was told was durable: every acknowledged write present with
at least its acknowledged state, every acknowledged drop applied exactly once.

An acknowledgement is recorded (in memory and in acks.jsonl beside the images, outside the
image) only after the command exited 0, or, for a drop, after the dropper's rename into
incoming/new was flushed.

Needs root, loop devices, mkfs.ext4, e2fsck, losetup, mount, cp.
Usage: powercut.py [--cuts N] [--kinds journal,nojournal] [--binary PATH] [--seed S] ...
The last line reads "total: C cuts, A acknowledged writes, L lost, T twice, P other problems";
the exit status is 0 only when L, T and P are all 0.
"""

import argparse
import fcntl
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

EXT4_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32)
EXT4_GOING_FLAGS_NOLOGFLUSH = 2

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled", "lost"}
AFTER_SUCCEEDED = {"succeeded", "failed", "timed_out", "cancelled"}


def at_least(actual, acked):
    """Whether a task status `actual` is the acknowledged status or a later one."""
    if actual is None:
        return False
    if acked == "queued":
        return True
    if acked == "running":
        return actual == "running" or actual in TERMINAL
    if acked == "succeeded":
        return actual in AFTER_SUCCEEDED
    return actual == acked


def log(msg):
    print(msg, flush=True)


def sh(cmd, check=True, timeout=120, **kw):
    """Runs a system command (a list), returns CompletedProcess with text output."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()} {r.stdout.strip()}")
    return r



def write_drop(path, body):
    """Writes a drop's JSON to a new file (O_EXCL) and fsyncs it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (json.dumps(body, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path):
    """Flushes a directory's entries (after a rename into it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

class Machine:
    """Loop devices and mounts this run made, undone in reverse order (also on failure)."""

    def __init__(self):
        self.stack = []  # ("mount", path) / ("loop", dev)

    def attach(self, image):
        dev = sh(["losetup", "-f", "--show", image]).stdout.strip()
        self.stack.append(("loop", dev))
        return dev

    def mount(self, dev, path):
        os.makedirs(path, exist_ok=True)
        sh(["mount", "-o", "noatime", dev, path])
        self.stack.append(("mount", path))

    def undo(self, item):
        kind, what = item
        if kind == "mount":
            for attempt in range(20):
                r = subprocess.run(["umount", what], capture_output=True, text=True)
                if r.returncode == 0 or not os.path.ismount(what):
                    break
                time.sleep(0.1)
            else:
                subprocess.run(["umount", "-l", what], capture_output=True)
        elif kind == "loop":
            for attempt in range(20):
                r = subprocess.run(["losetup", "-d", what], capture_output=True, text=True)
                if r.returncode == 0:
                    break
                time.sleep(0.1)
        if item in self.stack:
            self.stack.remove(item)

    def release(self, kind, what):
        self.undo((kind, what))

    def undo_all(self):
        while self.stack:
            self.undo(self.stack[-1])


class Workload:
    """The processes writing to the spool during one cut, and what they were told is durable."""

    def __init__(self, args, spool, cutdir, managed_flow, rng):
        self.args = args
        self.binary = args.binary
        self.spool = spool
        self.cutdir = cutdir
        self.managed = managed_flow
        self.rng = random.Random(rng.random())
        self.tag = uuid.uuid4().hex
        self.env = dict(os.environ, NO_COLOR="1", CLAWFLOW_POWERCUT_TAG=self.tag)
        self.env.pop("CLAWFLOW_SPOOL", None)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acks = []
        self.ack_file = open(os.path.join(cutdir, "acks.jsonl"), "a")
        self.threads = []
        self.watcher = None
        self.cut_at = None
        self.counters = {"commands": 0, "failed": 0}

    # -- acknowledgements --------------------------------------------------------------

    def ack(self, **record):
        record["t"] = time.monotonic()
        with self.lock:
            self.acks.append(record)
            self.ack_file.write(json.dumps(record, sort_keys=True) + "\n")
            self.ack_file.flush()

    def pause(self, low, high):
        """Sleeps a random while, scaled by --pace (the workload leaves the watcher CPU to keep up)."""
        time.sleep(self.rng.uniform(low, high) * self.args.pace)

    def clawflow(self, *arguments):
        """Runs clawflow on the spool; returns (status, stdout)."""
        if self.stop.is_set():
            return (-1, "")
        try:
            r = subprocess.run([self.binary, "--spool", self.spool, *arguments], capture_output=True, text=True,
                               env=self.env, cwd="/", timeout=60, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return (-1, "")
        with self.lock:
            self.counters["commands"] += 1
            if r.returncode != 0:
                self.counters["failed"] += 1
        return (r.returncode, r.stdout)

    # -- the writers -------------------------------------------------------------------

    def cli_writer(self, i):
        """tasks add (a new flow, or a link to the managed flow), then tasks set running, succeeded.
        Stops at its first failure: after a failed write, what it reads may not be durable."""
        n = 0
        while not self.stop.is_set():
            n += 1
            run_id = f"cli-{i}-{n}"
            if n % 4 == 0:
                status, out = self.clawflow("tasks", "add", self.managed, "--runtime", "cron", "--run-id", run_id, "--status", "queued")
            else:
                status, out = self.clawflow("tasks", "add", "--owner", f"w{i}", "--runtime", "cron", "--run-id", run_id, "--status", "queued")
            if status != 0:
                return
            task = out.strip()
            self.ack(what="task", task=task, runId=run_id, status="queued")
            for next_status in ("running", "succeeded"):
                self.pause(0.01, 0.04)
                status, _ = self.clawflow("tasks", "set", task, "--status", next_status)
                if status != 0:
                    return
                self.ack(what="task", task=task, runId=run_id, status=next_status)
            self.pause(0.01, 0.04)

    def runner(self):
        """clawflow run -- true (and now and then a two-step sequence): the task exists once run returns."""
        n = 0
        while not self.stop.is_set():
            n += 1
            if n % 5 == 0:
                status, out = self.clawflow("run", "--json", "--owner", f"s{n % 2}", "--goal", f"seq {n}", "--step", "true", "--step", "true")
            else:
                status, out = self.clawflow("run", "--json", "--owner", f"r{n % 3}", "--", "true")
            if status != 0:
                return
            try:
                started = json.loads(out)
            except ValueError:
                return
            self.ack(what="run", task=started["taskId"], flow=started["flowId"], status="queued")
            self.pause(0.02, 0.08)

    def maintainer(self):
        while not self.stop.wait(self.rng.uniform(0.3, 0.8)):
            self.clawflow("maintenance", "--apply", "--json")

    def dropper(self, d):
        """Maildir drops: write incoming/tmp/NAME, fsync it, rename into incoming/new, fsync
        incoming/new; only then acknowledged. Task drops (a new flow, or linked to the managed
        flow), and task-update drops for tasks of its own acknowledged drops."""
        tmp = os.path.join(self.spool, "incoming", "tmp")
        new = os.path.join(self.spool, "incoming", "new")
        pending = []  # [run_id, next status] of acknowledged task drops
        n = 0
        while not self.stop.is_set():
            n += 1
            name = f"d{d}-{n:06d}.json"
            roll = self.rng.random()
            if pending and roll < 0.35:
                k = self.rng.randrange(len(pending))
                run_id, status = pending[k]
                body = {"kind": "task-update", "runId": run_id, "status": status, "progressSummary": f"via {name}"}
                record = dict(what="update", name=name, runId=run_id, status=status)
                if status == "running":
                    pending[k][1] = "succeeded"
                else:
                    pending.pop(k)
            else:
                run_id = f"drop-{d}-{n}"
                body = {"kind": "task", "runtime": "cron", "runId": run_id, "label": name, "status": "queued"}
                if roll > 0.85:
                    body["parentFlowId"] = self.managed
                    body["ownerKey"] = "m"
                else:
                    body["ownerKey"] = f"d{d}-{n % 7}"
                record = dict(what="drop", name=name, runId=run_id, status="queued")
            try:
                write_drop(os.path.join(tmp, name), body)
                os.rename(os.path.join(tmp, name), os.path.join(new, name))
                fsync_directory(new)
            except OSError:
                return
            self.ack(**record)
            if record["what"] == "drop":
                pending.append([run_id, "running"])
            self.pause(0.01, 0.05)

    def burster(self, b):
        """Bursts of new-flow drops (each of its own owner key), so that a pass creates them in
        one grouped transaction (a syncfs per barrier): written and fsynced in incoming/tmp,
        renamed into incoming/new together, incoming/new fsynced; only then all acknowledged."""
        tmp = os.path.join(self.spool, "incoming", "tmp")
        new = os.path.join(self.spool, "incoming", "new")
        n = 0
        while not self.stop.is_set():
            records = []
            try:
                for _ in range(self.args.burst):
                    n += 1
                    name = f"b{b}-{n:06d}.json"
                    run_id = f"burst-{b}-{n}"
                    body = {"kind": "task", "runtime": "cron", "runId": run_id, "label": name, "status": "queued", "ownerKey": f"b{b}-{n}"}
                    write_drop(os.path.join(tmp, name), body)
                    records.append(dict(what="drop", name=name, runId=run_id, status="queued"))
                for r in records:
                    os.rename(os.path.join(tmp, r["name"]), os.path.join(new, r["name"]))
                fsync_directory(new)
            except OSError:
                return
            for r in records:
                self.ack(**r)
            self.pause(0.1, 0.3)

    # -- starting and stopping ---------------------------------------------------------

    def start(self):
        self.watch_log = open(os.path.join(self.cutdir, "watch.log"), "a")
        self.watcher = subprocess.Popen([self.binary, "--spool", self.spool, "watch", "--log-level", "warning"],
                                        stdout=self.watch_log, stderr=self.watch_log, stdin=subprocess.DEVNULL,
                                        env=self.env, cwd="/")
        targets = [(self.cli_writer, (i,)) for i in range(self.args.writers)]
        targets += [(self.dropper, (d,)) for d in range(self.args.droppers)]
        targets += [(self.burster, (b,)) for b in range(self.args.bursters)]
        targets += [(self.runner, ()), (self.maintainer, ())]
        for fn, a in targets:
            t = threading.Thread(target=fn, args=a, daemon=True)
            t.start()
            self.threads.append(t)

    def tagged_pids(self):
        marker = f"CLAWFLOW_POWERCUT_TAG={self.tag}".encode()
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        pids.append(int(entry))
            except OSError:
                continue
        return pids

    def kill(self):
        """Stops the writers and ends every process this workload started (found by its tag)."""
        self.stop.set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = self.tagged_pids()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if self.watcher is not None:
                try:
                    self.watcher.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    pass
            alive = [t for t in self.threads if t.is_alive()]
            for t in alive:
                t.join(timeout=0.05)
            if not pids and not any(t.is_alive() for t in self.threads):
                break
        self.watch_log.close()
        self.ack_file.close()


# -- the checker -----------------------------------------------------------------------

def read_spool(spool):
    """Every readable task record under flows/: task id -> list of (flow id, record)."""
    tasks = {}
    unreadable = []
    flows_dir = os.path.join(spool, "flows")
    for flow in sorted(os.listdir(flows_dir)):
        if flow.startswith("."):
            continue
        tdir = os.path.join(flows_dir, flow, "tasks")
        try:
            names = os.listdir(tdir)
        except OSError as e:
            unreadable.append(f"{tdir}: {e}")
            continue
        for name in names:
            if name.startswith(".") or not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(tdir, name)) as f:
                    record = json.load(f)
            except (OSError, ValueError) as e:
                unreadable.append(f"{tdir}/{name}: {e}")
                continue
            tasks.setdefault(record.get("taskId"), []).append((flow, record))
    return tasks, unreadable


def check(spool, acks):
    """Compares the recovered spool with the acknowledgements: (acknowledged, lost, twice, problems, details)."""
    tasks, unreadable = read_spool(spool)
    by_run = {}
    for task_id, copies in tasks.items():
        for flow, record in copies:
            if record.get("runId"):
                by_run.setdefault(record["runId"], []).append((task_id, flow, record))
    details = []
    problems = [f"unreadable {u}" for u in unreadable]
    lost = 0
    # The strongest acknowledged state per write.
    latest = {}
    for a in acks:
        if a["what"] in ("task", "run"):
            key = ("task", a["task"])
        else:
            key = ("drop", a["runId"]) if a["what"] == "drop" else ("update", a["runId"], a["status"])
        latest[key] = a  # acks of one task come in order
    for key, a in latest.items():
        if key[0] == "task":
            copies = tasks.get(a["task"], [])
            actual = copies[0][1].get("status") if len(copies) == 1 else None
            if not copies or not at_least(actual, a["status"]):
                lost += 1
                details.append(f"LOST {a['what']} {a['task']} (run id {a.get('runId')}): acknowledged {a['status']}, found {[c[1].get('status') for c in copies]}")
        else:
            found = by_run.get(a["runId"], [])
            if not found:
                lost += 1
                details.append(f"LOST {a['what']} {a['name']}: no task with run id {a['runId']}")
            elif key[0] == "update" and not any(at_least(r.get("status"), a["status"]) for _, _, r in found):
                lost += 1
                details.append(f"LOST update {a['name']} ({a['status']}) of run id {a['runId']}: found {[r.get('status') for _, _, r in found]}")
    twice = 0
    for task_id, copies in tasks.items():
        if len(copies) > 1:
            twice += 1
            details.append(f"TWICE task {task_id} in flows {[c[0] for c in copies]}")
    for run_id, found in by_run.items():
        if len(found) > 1:
            twice += 1
            details.append(f"TWICE run id {run_id}: tasks {[(t, f) for t, f, _ in found]}")
    # Nothing may be left in the drop box after the recovery's ingest, and nothing refused.
    for sub in ("incoming/new", "incoming/claimed"):
        left = [n for n in os.listdir(os.path.join(spool, sub)) if not n.startswith(".")]
        if left:
            problems.append(f"{sub} still holds {left[:5]}{' ...' if len(left) > 5 else ''}")
    rejected_dir = os.path.join(spool, "rejected")
    for name in sorted(os.listdir(rejected_dir)) if os.path.isdir(rejected_dir) else []:
        if name.endswith(".reason"):
            try:
                with open(os.path.join(rejected_dir, name)) as f:
                    reason = json.load(f)
            except (OSError, ValueError):
                reason = {}
            problems.append(f"rejected {name[:-7]}: {reason.get('code')} {reason.get('message')}")
    details += problems
    return len(latest), lost, twice, problems, details


def ack_counts(acks):
    c = {}
    for a in acks:
        c[a["what"]] = c.get(a["what"], 0) + 1
    return c


# -- one cut ---------------------------------------------------------------------------

def clawflow(binary, spool, *arguments, timeout=300):
    env = dict(os.environ, NO_COLOR="1")
    env.pop("CLAWFLOW_SPOOL", None)
    return subprocess.run([binary, "--spool", spool, *arguments], capture_output=True, text=True, env=env,
                          cwd="/", timeout=timeout, stdin=subprocess.DEVNULL)


def run_cut(args, machine, kind, index, rng, workdir):
    """One cut; returns a dict of figures."""
    cutdir = tempfile.mkdtemp(prefix=f"cut-{kind}-{index:03d}-", dir=workdir)
    image = os.path.join(cutdir, "device.img")
    copy = os.path.join(cutdir, "copy.img")
    mnt = os.path.join(cutdir, "mnt")
    mnt2 = os.path.join(cutdir, "mnt-copy")
    result = {"kind": kind, "index": index, "cutdir": cutdir}
    workload = None
    failed = True
    try:
        with open(image, "wb") as f:
            f.truncate(args.size_mib * 1024 * 1024)
        mkfs = ["mkfs.ext4", "-q", "-F", "-b", "4096", "-I", "256", "-i", "4096"]
        if kind == "nojournal":
            mkfs += ["-O", "^has_journal"]
        sh(mkfs + [image])
        loop = machine.attach(image)
        machine.mount(loop, mnt)
        spool = os.path.join(mnt, "spool")
        r = clawflow(args.binary, spool, "init")
        if r.returncode != 0:
            raise RuntimeError(f"init: {r.stderr}")
        r = clawflow(args.binary, spool, "flows", "create", "--owner", "m", "--goal", "links", "--controller", "powercut", "--running")
        if r.returncode != 0:
            raise RuntimeError(f"flows create: {r.stderr}")
        managed = r.stdout.strip()

        workload = Workload(args, spool, cutdir, managed, rng)
        workload.start()
        delay = rng.uniform(args.min_delay, args.max_delay)
        time.sleep(delay)
        # The cut: nothing more reaches the device; then the device as it is, copied at once.
        fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH))
            workload.cut_at = time.monotonic()
            sh(["cp", "--sparse=always", image, copy])
        finally:
            os.close(fd)
        workload.kill()
        machine.release("mount", mnt)
        machine.release("loop", loop)
        os.unlink(image)
        result["delay"] = delay
        if args.keep_failed:
            sh(["cp", "--sparse=always", copy, os.path.join(cutdir, "cut.img")])

        # e2fsck as at boot: -p, and -y when -p refuses.
        r = sh(["e2fsck", "-p", copy], check=False, timeout=600)
        e2 = f"e2fsck -p: {r.returncode}"
        e2out = r.stdout + r.stderr
        if r.returncode >= 4:
            r2 = sh(["e2fsck", "-fy", copy], check=False, timeout=600)
            e2 += f", -fy: {r2.returncode}"
            e2out += "\n--- e2fsck -fy ---\n" + r2.stdout + r2.stderr
            if r2.returncode >= 4:
                raise RuntimeError(f"e2fsck -fy could not repair the copy: {e2out}")
        result["e2fsck"] = e2
        result["e2fsck_preen_refused"] = r.returncode >= 4
        with open(os.path.join(cutdir, "e2fsck.txt"), "w") as f:
            f.write(e2out)
        result["e2fsck_out"] = e2out

        loop2 = machine.attach(copy)
        machine.mount(loop2, mnt2)
        spool2 = os.path.join(mnt2, "spool")
        lf = os.path.join(mnt2, "lost+found")
        result["lost_found"] = len(os.listdir(lf)) if os.path.isdir(lf) else 0
        problems = []
        # A spool a crash interrupted passes fsck before anything repairs it (notes allowed).
        before = clawflow(args.binary, spool2, "fsck")
        result["fsck_before"] = before.returncode
        if before.returncode != 0:
            result["fsck_before_out"] = (before.stdout + before.stderr).strip()
            problems.append(f"fsck before recovery exited {before.returncode} (spool-layout.md: a spool a crash interrupted at any instant passes fsck)")
        # Recovery by the next clawflow commands.
        ing = clawflow(args.binary, spool2, "ingest", "--json")
        if ing.returncode != 0:
            problems.append(f"ingest exited {ing.returncode}: {ing.stderr.strip()}")
        try:
            report = json.loads(ing.stdout)
        except ValueError:
            report = {}
        result["ingest"] = ", ".join(f"{k} {report.get(k, '?')}" for k in ("applied", "recovered", "repeats", "rejected", "waiting"))
        rep = clawflow(args.binary, spool2, "fsck", "--repair")
        if rep.returncode != 0:
            problems.append(f"fsck --repair exited {rep.returncode}: {(rep.stdout + rep.stderr).strip()}")
        after = clawflow(args.binary, spool2, "fsck")
        if after.returncode != 0:
            problems.append(f"fsck after repair exited {after.returncode}: {(after.stdout + after.stderr).strip()}")

        acks = list(workload.acks)
        acked, lost, twice, check_problems, details = check(spool2, acks)
        problems += check_problems
        result.update(acked=acked, ack_lines=len(acks), ack_counts=ack_counts(acks), lost=lost, twice=twice,
                      problems=len(problems), details=details + [p for p in problems if p not in details],
                      after_cut=sum(1 for a in acks if a["t"] > workload.cut_at),
                      commands=workload.counters["commands"])
        machine.release("mount", mnt2)
        machine.release("loop", loop2)
        failed = lost > 0 or twice > 0 or problems or before.returncode != 0
        return result
    finally:
        if workload is not None and not workload.stop.is_set():
            workload.kill()
        machine.undo_all()
        if failed and args.keep_failed:
            for name in ("mnt", "mnt-copy"):
                try:
                    os.rmdir(os.path.join(cutdir, name))
                except OSError:
                    pass
            os.makedirs(args.keep_failed, exist_ok=True)
            dest = os.path.join(args.keep_failed, os.path.basename(cutdir))
            shutil.move(cutdir, dest)
            result["kept"] = dest
        else:
            shutil.rmtree(cutdir, ignore_errors=True)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    p = argparse.ArgumentParser(description="Power cuts on loop-mounted ext4 under a clawflow workload.")
    p.add_argument("--cuts", type=int, default=int(os.environ.get("CUTS", "3")), help="cuts per kind of filesystem (default: $CUTS, else 3)")
    p.add_argument("--kinds", default="journal,nojournal", help="journal, nojournal or both (comma-separated)")
    p.add_argument("--binary", default=os.environ.get("CLAWFLOW_BINARY") or os.path.join(repo, ".build/debug/clawflow"))
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--min-delay", type=float, default=0.5)
    p.add_argument("--max-delay", type=float, default=3.0)
    p.add_argument("--size-mib", type=int, default=256)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--droppers", type=int, default=2)
    p.add_argument("--bursters", type=int, default=1, help="threads dropping bursts of new-flow drops")
    p.add_argument("--burst", type=int, default=12, help="drops per burst (8 or more: one grouped transaction)")
    p.add_argument("--pace", type=float, default=1.0, help="scales the writers' pauses (0: none)")
    p.add_argument("--workdir", default=os.environ.get("POWERCUT_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"),
                   help="where the images go (default /dev/shm)")
    p.add_argument("--keep-failed", default=None, help="keep the cut image, e2fsck output and acks of a failing cut here")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()

    if os.geteuid() != 0:
        log("powercut: needs root (loop devices, mount, the shutdown ioctl)")
        return 2
    for tool in ("mkfs.ext4", "e2fsck", "losetup", "mount", "umount", "cp"):
        if shutil.which(tool) is None:
            log(f"powercut: {tool} not found")
            return 2
    if not os.access(args.binary, os.X_OK):
        log(f"powercut: no clawflow binary at {args.binary} (swift build first, or --binary)")
        return 2
    kinds = [k for k in args.kinds.split(",") if k]
    for k in kinds:
        if k not in ("journal", "nojournal"):
            log(f"powercut: unknown kind {k}")
            return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    rng = random.Random(seed)
    log(f"powercut: {args.cuts} cut(s) per kind on {', '.join(kinds)}; seed {seed}; binary {args.binary}; images in {args.workdir}")

    machine = Machine()
    workdir = tempfile.mkdtemp(prefix="clawflow-powercut-", dir=args.workdir)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    totals = {k: dict(cuts=0, acked=0, lost=0, twice=0, problems=0, preen_refused=0, fsck_before=0, lost_found=0) for k in kinds}
    started = time.monotonic()
    status = 0
    try:
        order = [(k, i) for i in range(args.cuts) for k in kinds]  # alternate the kinds
        for kind, i in order:
            try:
                r = run_cut(args, machine, kind, i + 1, rng, workdir)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # the harness itself failed: say so, count a problem
                log(f"[{kind} {i + 1}/{args.cuts}] harness error: {e}")
                totals[kind]["problems"] += 1
                totals[kind]["cuts"] += 1
                continue
            t = totals[kind]
            t["cuts"] += 1
            t["acked"] += r["acked"]
            t["lost"] += r["lost"]
            t["twice"] += r["twice"]
            t["problems"] += r["problems"]
            t["preen_refused"] += 1 if r["e2fsck_preen_refused"] else 0
            t["fsck_before"] += 1 if r["fsck_before"] != 0 else 0
            t["lost_found"] += r["lost_found"]
            counts = ", ".join(f"{k} {v}" for k, v in sorted(r["ack_counts"].items()))
            log(f"[{kind} {i + 1}/{args.cuts}] cut after {r['delay']:.2f}s, {r['commands']} commands: "
                f"{r['acked']} acknowledged writes ({r['ack_lines']} acks: {counts}; {r['after_cut']} after the cut), "
                f"{r['lost']} lost, {r['twice']} twice, {r['problems']} other problems; {r['e2fsck']}"
                f"{', lost+found: ' + str(r['lost_found']) if r['lost_found'] else ''}; fsck before recovery: {r['fsck_before']}; "
                f"recovery ingest: {r['ingest']}" + (f"; kept in {r['kept']}" if r.get("kept") else ""))
            if args.verbose or r["e2fsck_preen_refused"]:
                for line in r["e2fsck_out"].splitlines():
                    if line.strip() and not line.startswith(("Pass ", "e2fsck ")):
                        log(f"    e2fsck| {line}")
            if r["fsck_before"] != 0:
                for line in r.get("fsck_before_out", "").splitlines()[:20]:
                    log(f"    fsck before recovery| {line}")
            for d in r["details"][:40]:
                log(f"    {d}")
    except KeyboardInterrupt:
        log("powercut: interrupted")
        status = 130
    finally:
        machine.undo_all()
        shutil.rmtree(workdir, ignore_errors=True)

    all_t = dict(cuts=0, acked=0, lost=0, twice=0, problems=0, preen_refused=0, fsck_before=0, lost_found=0)
    for k in kinds:
        t = totals[k]
        for key in all_t:
            all_t[key] += t[key]
        log(f"{k}: {t['cuts']} cuts, {t['acked']} acknowledged writes, {t['lost']} lost, {t['twice']} twice, "
            f"{t['problems']} other problems (e2fsck -p refused {t['preen_refused']}, fsck before recovery failed {t['fsck_before']}, "
            f"lost+found entries {t['lost_found']})")
    log(f"time: {time.monotonic() - started:.1f}s")
    log(f"total: {all_t['cuts']} cuts, {all_t['acked']} acknowledged writes, {all_t['lost']} lost, {all_t['twice']} twice, "
        f"{all_t['problems']} other problems")
    if status == 0 and (all_t["lost"] or all_t["twice"] or all_t["problems"] or all_t["cuts"] < args.cuts * len(kinds)):
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
