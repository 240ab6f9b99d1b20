import CSystemShims
import ClawflowSpool
import Glibc
import SystemPackage

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

/// Signal names for task records.
enum SignalName {
    static func of(_ signal: Int32) -> String {
        let names: [Int32: String] = [
            SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGABRT: "SIGABRT",
            SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM",
            SIGTERM: "SIGTERM", SIGUSR1: "SIGUSR1", SIGUSR2: "SIGUSR2", SIGBUS: "SIGBUS", SIGXCPU: "SIGXCPU",
        ]
        return names[signal] ?? "signal \(signal)"
    }
}

/// A command started held before its exec (`clawflow_spawn_held`): its pid and process group
/// exist, so they can be recorded durably before anything of the command runs.
struct HeldCommand: ~Copyable {
    /// The command's pid, also its process group.
    let pid: Int32
    private let release: Int32

    /// Forks `argv` (looked up in PATH) with stdout and stderr to `output` (nil: /dev/null),
    /// in `cwd`, in a process group of its own, held before its exec. Its environment is this
    /// process's, with `setting` replacing the variables of those names.
    init(_ argv: [String], output: FileDescriptor?, cwd: String?, setting: [String: String] = [:]) throws(Errno) {
        var pid: pid_t = 0
        var release: Int32 = -1
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        let cEnv = HeldCommand.environment(setting).map { strdup($0) } + [nil]
        defer { for p in cEnv { free(p) } }
        let rc: Int32 = cArgs.withUnsafeBufferPointer { args in
            cEnv.withUnsafeBufferPointer { env in
                clawflow_spawn_held(argv[0], args.baseAddress, UnsafeMutablePointer(mutating: env.baseAddress), cwd, output?.rawValue ?? -1, &pid, &release)
            }
        }
        guard rc == 0 else { throw Errno(rawValue: rc) }
        self.pid = pid
        self.release = release
    }

    /// This process's environment as `NAME=value` entries, with `setting` replacing (or
    /// adding) the variables of those names.
    static func environment(_ setting: [String: String]) -> [String] {
        var entries: [String] = []
        var p = environ
        while let entry = p.pointee {
            let text = String(cString: entry)
            if let eq = text.firstIndex(of: "="), setting[String(text[..<eq])] != nil {} else { entries.append(text) }
            p += 1
        }
        return entries + setting.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    }

    /// Lets the command exec and waits until it has; nil when it runs, else why it could not
    /// (the child then exits with status 127).
    consuming func start() -> Errno? {
        let rc = clawflow_release(release, 1)
        discard self
        return rc == 0 ? nil : Errno(rawValue: rc)
    }

    /// Lets the child exit without running the command.
    deinit { close(release) }
}
