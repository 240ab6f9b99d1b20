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
    /// cannot tell, a pid that answers kill(pid, 0) counts as the writer; one that has exited
    /// and waits to be reaped (a zombie, which answers too) does not.
    public static func mayHaveWritten(pid: Int32, modifiedMilliseconds: Int64?) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = ProcStat(pid: pid) else { return true }
        guard stat.state != "Z", stat.state != "X" else { return false }
        guard let modifiedMilliseconds else { return true }
        return ProcessIdentity(pid: pid, startTime: stat.startTime).startedAtMilliseconds <= modifiedMilliseconds + 1000
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
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // A stat line is shorter than 1 KiB; parsed where it was read, without a String.
        let parsed: ProcStat?? = withUnsafeTemporaryAllocation(byteCount: 1024, alignment: 1) { line in
            guard case .success(let count) = valueOrErrno({ Glibc.read(fd, line.baseAddress, line.count) }), count > 0 else { return nil }
            return .some(ProcStat(line: UnsafeRawBufferPointer(rebasing: line[..<count])))
        }
        guard let parsed, let parsed else { return nil }
        self = parsed
    }

    /// Parses a stat line; the command name (field 2) may hold spaces and parentheses, so
    /// fields are counted after its last ')'.
    public init?(text: String) {
        var text = text
        guard let parsed = text.withUTF8({ ProcStat(line: UnsafeRawBufferPointer($0)) }) else { return nil }
        self = parsed
    }

    /// The parse of `init?(text:)`, on the line's bytes.
    private init?(line: UnsafeRawBufferPointer) {
        guard let close = line.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        var field = 2  // the field the bytes after `close` belong to
        var state: UInt8 = 0
        var group: Int64 = 0
        var start: Int64 = 0
        var digits = 0  // digits seen in the current field (fields 5 and 22)
        var i = close + 1
        while i < line.count {
            let byte = line[i]
            i += 1
            if byte == UInt8(ascii: " ") {
                if field == 5 || field == 22, digits == 0 { return nil }
                if field == 22 { break }
                field += 1
                digits = 0
                continue
            }
            switch field {
            case 3: if state == 0 { state = byte }
            case 5, 22:
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), digits < 18 else { return nil }
                let value = Int64(byte - UInt8(ascii: "0"))
                if field == 5 { group = group * 10 + value } else { start = start * 10 + value }
                digits += 1
            default: break
            }
        }
        guard field == 22, digits > 0, state != 0, group <= Int64(Int32.max) else { return nil }
        self.state = Character(Unicode.Scalar(state))
        processGroup = Int32(group)
        startTime = start
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
