#!/usr/bin/env python3
"""clawflow top under load: `bash bench/top.sh` (see bench/README.md, "top").

1. Latency: top runs in a pseudo-terminal of 120x40 read by this script; LAT_N times a flow is
   created (`tasks add`) and the time from its createdAt to the moment top's output draws its
   owner key is taken. Baseline in the same run: a minimal inotify reader (ctypes, IN_MOVED_TO
   on flows/) timing the same creations from createdAt to the rename's event.
2. A burst: N live flows (made by one `ingest` of N drops), top started and settled, then N
   task-update drops (running -> succeeded) applied by one `ingest` as fast as it goes. Top's
   CPU (utime+stime from /proc over the wall time from the first change to the screen showing
   the last) and how far behind the last change (the latest endedAt) the screen showed
   "N ended recently". Baseline in the same run: `events --follow` (the other live reader),
   its CPU over the same window and the lag to its printing the last flow's status line.
Nothing asserts a timing: figures are printed beside the targets of issue 19.
"""
import ctypes, json, os, pty, select, signal, struct, subprocess, sys, tempfile, threading, time, fcntl, termios

BIN = sys.argv[1]
N = int(os.environ.get("BENCH_TOP_N", "1000"))
LAT_N = int(os.environ.get("BENCH_TOP_LAT_N", "50"))
TICK = os.sysconf("SC_CLK_TCK")


def now_ms():
    return time.time() * 1000.0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def clawflow(spool, *args, check=True):
    r = subprocess.run([BIN, "--spool", spool, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"bench/top: clawflow {' '.join(args)} failed: {r.stderr}")
    return r.stdout.strip()


class PtyTop:
    """clawflow top in a pty; a thread reads its output and notes when strings first appear."""

    def __init__(self, spool, env=None):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ.pop("NO_COLOR", None)
            os.environ["TERM"] = "xterm-256color"
            os.execv(BIN, [BIN, "--spool", spool, "top"])
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.kill(self.pid, signal.SIGWINCH)
        self.buffer = b""
        self.lock = threading.Lock()
        self.wanted = {}  # bytes -> time first seen (ms), None while unseen
        self.done = False
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self):
        while not self.done:
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if not r:
                continue
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                return
            t = now_ms()
            with self.lock:
                self.buffer = (self.buffer + chunk)[-(1 << 16):]
                for key, seen in self.wanted.items():
                    if seen is None and key in self.buffer:
                        self.wanted[key] = t

    def watch_for(self, text):
        with self.lock:
            self.wanted[text.encode()] = self.wanted.get(text.encode())
            if text.encode() in self.buffer:
                self.wanted[text.encode()] = now_ms()

    def seen(self, text, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                t = self.wanted.get(text.encode())
            if t is not None:
                return t
            time.sleep(0.002)
        return None

    def stop(self):
        os.write(self.fd, b"q")
        os.waitpid(self.pid, 0)
        self.done = True


class InotifyFloor:
    """The floor: a bare inotify reader of flows/, timing when a flow directory is renamed in."""

    def __init__(self, flows):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = libc.inotify_init1(os.O_CLOEXEC)
        libc.inotify_add_watch(self.fd, flows.encode(), 0x00000080 | 0x00000100)  # IN_MOVED_TO | IN_CREATE
        self.times = {}
        self.done = False
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        while not self.done:
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if not r:
                continue
            data = os.read(self.fd, 1 << 16)
            t = now_ms()
            i = 0
            while i + 16 <= len(data):
                _, _, _, length = struct.unpack_from("iIII", data, i)
                name = data[i + 16:i + 16 + length].rstrip(b"\0").decode()
                self.times.setdefault(name, t)
                i += 16 + length


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def latency(work):
    spool = os.path.join(work, "lat")
    clawflow(spool, "init")
    floor = InotifyFloor(os.path.join(spool, "flows"))
    top = PtyTop(spool)
    top.watch_for("No flows in flight.")
    if top.seen("No flows in flight.", 10) is None:
        sys.exit("bench/top: top did not draw its first screen")
    ours, base = [], []
    for i in range(LAT_N):
        owner = f"lat-owner-{i:04d}"
        top.watch_for(owner)
        task = clawflow(spool, "tasks", "add", "--owner", owner, "--runtime", "cron", "--status", "running")
        shown = top.seen(owner, 10)
        flow = json.loads(clawflow(spool, "tasks", "show", task, "--json"))["parentFlowId"]
        created = json.loads(clawflow(spool, "flows", "show", flow, "--json"))["createdAt"]
        created_ms = iso_ms(created)
        if shown is None:
            sys.exit(f"bench/top: flow {i} never appeared on top's screen")
        ours.append(shown - created_ms)
        if flow in floor.times:
            base.append(floor.times[flow] - created_ms)
        time.sleep(0.05)
    top.stop()
    floor.done = True
    return ours, base


def iso_ms(text):
    import datetime
    d = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return d.timestamp() * 1000.0


def drops(spool, kind, items):
    new = os.path.join(spool, "incoming", "new")
    tmp = os.path.join(spool, "incoming", "tmp")
    for name, obj in items:
        p = os.path.join(tmp, name)
        with open(p, "w") as f:
            json.dump(obj, f)
        os.rename(p, os.path.join(new, name))


def burst(work):
    spool = os.path.join(work, "burst")
    clawflow(spool, "init")
    ids = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(N)]
    drops(spool, "task", [(f"make-{i}.json", {"kind": "task", "taskId": ids[i], "ownerKey": f"burst-{i:04d}", "runtime": "cron", "label": "burst", "status": "running"}) for i in range(N)])
    clawflow(spool, "ingest")
    top = PtyTop(spool)
    top.watch_for(f"{N} live ({N} running)")
    if top.seen(f"{N} live ({N} running)", 60) is None:
        sys.exit("bench/top: top never showed the live flows")
    follower = subprocess.Popen([BIN, "--spool", spool, "events", "--follow"], stdout=subprocess.PIPE, text=True)
    follow_seen = {"n": 0, "last": None}

    def follow():
        for line in follower.stdout:
            if "running -> succeeded  (flow" in line:
                follow_seen["n"] += 1
                if follow_seen["n"] == N:
                    follow_seen["last"] = now_ms()
    threading.Thread(target=follow, daemon=True).start()
    time.sleep(1.5)  # events --follow reads the history first
    done_text = f"0 live, {N} ended recently"
    top.watch_for(done_text)
    cpu_top0, cpu_follow0 = cpu_seconds(top.pid), cpu_seconds(follower.pid)
    t0 = now_ms()
    drops(spool, "task-update", [(f"done-{i}.json", {"kind": "task-update", "taskId": ids[i], "status": "succeeded"}) for i in range(N)])
    clawflow(spool, "ingest")
    t_writes = now_ms()
    shown = top.seen(done_text, 120)
    deadline = time.time() + 60
    while follow_seen["last"] is None and time.time() < deadline:
        time.sleep(0.01)
    t_end = max(shown or 0, follow_seen["last"] or 0)
    cpu_top = cpu_seconds(top.pid) - cpu_top0
    cpu_follow = cpu_seconds(follower.pid) - cpu_follow0
    listing = json.loads(clawflow(spool, "flows", "list", "--json"))
    last_change = max(iso_ms(f["endedAt"]) for f in listing["flows"])
    top.stop()
    follower.terminate()
    follower.wait()
    wall = (t_end - t0) / 1000.0
    return {
        "writes_s": (t_writes - t0) / 1000.0,
        "top_lag_ms": None if shown is None else shown - last_change,
        "top_cores": cpu_top / ((shown or t_end) - t0) * 1000.0,
        "top_cpu_s": cpu_top,
        "follow_lag_ms": None if follow_seen["last"] is None else follow_seen["last"] - last_change,
        "follow_cores": cpu_follow / ((follow_seen["last"] or t_end) - t0) * 1000.0,
        "follow_cpu_s": cpu_follow,
        "wall_s": wall,
    }


def main():
    work = tempfile.mkdtemp(prefix="clawflow-topbench.")
    ours, base = latency(work)
    print(f"1. new flow on top's screen, {LAT_N} flows (ms from createdAt; target <= 100 ms):")
    print(f"   top             median {pct(ours, 50):7.1f}  p99 {pct(ours, 99):7.1f}  max {max(ours):7.1f}")
    if base:
        print(f"   inotify floor   median {pct(base, 50):7.1f}  p99 {pct(base, 99):7.1f}  (rename seen by a bare inotify reader)")
    b = burst(work)
    print(f"2. {N} flows changing at once ({N} task-update drops applied by one ingest in {b['writes_s']:.2f} s):")
    lag = "never" if b["top_lag_ms"] is None else f"{b['top_lag_ms']:.0f} ms"
    print(f"   top             behind the last change by {lag} (target <= 250 ms); CPU {b['top_cpu_s']:.2f} s = {b['top_cores']:.2f} cores (target <= 1)")
    flag = "never" if b["follow_lag_ms"] is None else f"{b['follow_lag_ms']:.0f} ms"
    print(f"   events --follow behind the last change by {flag}; CPU {b['follow_cpu_s']:.2f} s = {b['follow_cores']:.2f} cores (baseline)")
    subprocess.run(["rm", "-rf", work])


main()
