import Glibc

/// A process as /proc shows it: its id and start time tell a live process from a reused pid.
public struct ProcessIdentity: Sendable, Equatable {
    /// The process id.
    public var pid: Int32
    /// Field 22 of /proc/<pid>/stat: clock ticks after boot when it started.
    public var startTime: Int64

    /// An identity from a record's pid and start time.
    public init(pid: Int32, startTime: Int64) {
        self.pid = pid
        self.startTime = startTime
    }

    /// The identity of a running (not zombie) process, or nil when there is none.
    public static func of(_ pid: Int32) -> ProcessIdentity? {
        guard let stat = ProcStat(pid: pid), stat.state != "Z", stat.state != "X" else { return nil }
        return ProcessIdentity(pid: pid, startTime: stat.startTime)
    }

    /// This process.
    public static var current: ProcessIdentity { of(getpid())! }

    /// Whether this exact process (same pid, same start time) still runs.
    public var isAlive: Bool { ProcessIdentity.of(pid) == self }

    /// When it started, in milliseconds since the epoch: boot time (the wall clock less the
    /// boot clock, now) plus its start time. Rounded down to a clock tick (10 ms here).
    public var startedAtMilliseconds: Int64 {
        var wall = timespec()
        var boot = timespec()
        clock_gettime(CLOCK_REALTIME, &wall)
        clock_gettime(CLOCK_BOOTTIME, &boot)
        let bootedAt = (Int64(wall.tv_sec) - Int64(boot.tv_sec)) * 1000 + (Int64(wall.tv_nsec) - Int64(boot.tv_nsec)) / 1_000_000
        let ticks = max(Int64(sysconf(Int32(_SC_CLK_TCK))), 1)
        return bootedAt + startTime * 1000 / ticks
    }

    /// Whether process `pid` may be the writer of something last changed at `modifiedMilliseconds`
    /// (wall clock): it runs, and it started before then. A pid the kernel has handed on to a
    /// newer process since (pid_max is often 32,768) is not. Started up to 1 s after counts as
    /// before: file times come from a coarse clock, start times are whole ticks. When /proc
    /// cannot tell, a pid that answers kill(pid, 0) counts as the writer.
    public static func mayHaveWritten(pid: Int32, modifiedMilliseconds: Int64?) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let modifiedMilliseconds, let process = of(pid) else { return true }
        return process.startedAtMilliseconds <= modifiedMilliseconds + 1000
    }
}

/// The fields of /proc/<pid>/stat clawflow uses.
public struct ProcStat: Sendable {
    /// Field 3: R, S, D, Z, T, ...
    public var state: Character
    /// Field 5: the process group.
    public var processGroup: Int32
    /// Field 22: clock ticks after boot when it started.
    public var startTime: Int64

    /// Reads /proc/<pid>/stat; nil when the process is gone (or /proc hides it).
    public init?(pid: Int32) {
        guard let text = ProcStat.read("/proc/\(pid)/stat") else { return nil }
        self.init(text: text)
    }

    /// Parses a stat line; the command name (field 2) may hold spaces and parentheses, so
    /// fields are counted after its last ')'.
    public init?(text: String) {
        guard let close = text.lastIndex(of: ")") else { return nil }
        let rest = text[text.index(after: close)...].split(separator: " ")
        // rest[0] is field 3 (state); field n is rest[n - 3].
        guard rest.count > 19, let state = rest[0].first, let pgrp = Int32(rest[2]), let start = Int64(rest[19]) else { return nil }
        self.state = state
        processGroup = pgrp
        startTime = start
    }

    /// The first 1 KiB of a /proc file (a stat line is shorter), or nil.
    static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1024)
        guard case .success(let n) = valueOrErrno({ buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) } }), n > 0 else { return nil }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }
}

/// Process groups: signals and the question whether any member is left.
public enum ProcessGroup {
    /// Whether any process (not a zombie) of group `pgid` is left.
    public static func isAlive(_ pgid: Int32) -> Bool {
        guard pgid > 1 else { return false }
        if kill(-pgid, 0) != 0 { return false }
        guard let dir = opendir("/proc") else { return true }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let pid = Int32(name), let stat = ProcStat(pid: pid) else { continue }
            if stat.processGroup == pgid, stat.state != "Z", stat.state != "X" { return true }
        }
        return false
    }

    /// Sends `signal` to every process of group `pgid`; false when none is left.
    @discardableResult
    public static func signal(_ pgid: Int32, _ signal: Int32) -> Bool {
        guard pgid > 1 else { return false }
        return kill(-pgid, signal) == 0
    }

    /// SIGTERM to the group, SIGKILL after `grace` seconds if any member is left; returns
    /// once no member is left (or 5 s after the SIGKILL). True when the group is gone.
    @discardableResult
    public static func end(_ pgid: Int32, grace: Double, reap: () -> Void = {}) -> Bool {
        guard signal(pgid, SIGTERM) || isAlive(pgid) else { return true }
        if waitGone(pgid, seconds: grace, reap: reap) { return true }
        signal(pgid, SIGKILL)
        return waitGone(pgid, seconds: 5, reap: reap)
    }

    /// Waits up to `seconds` for the group to be gone, calling `reap` between looks.
    static func waitGone(_ pgid: Int32, seconds: Double, reap: () -> Void) -> Bool {
        var waited = 0.0
        while true {
            reap()
            // A member forked while the group was being signalled can be missed by one pass
            // over /proc (and may have missed the signal): the group is gone only when a
            // second look, a moment later, finds no member either.
            if !isAlive(pgid) {
                usleep(30_000)
                reap()
                if !isAlive(pgid) { return true }
            }
            if waited >= seconds { return false }
            usleep(20_000)
            waited += 0.02
        }
    }
}
