import CSystemShims
import ClawflowSpool
import Glibc
import SystemPackage

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
    /// in `cwd`, in a process group of its own, held before its exec. Its environment is
    /// `environment` (nil: this process's), with `setting` replacing the variables of those names.
    init(_ argv: [String], output: FileDescriptor?, cwd: String?, environment: [String: String]? = nil, setting: [String: String] = [:]) throws(Errno) {
        var pid: pid_t = 0
        var release: Int32 = -1
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        let entries =
            environment.map { env in env.merging(setting) { _, set in set }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } }
            ?? HeldCommand.environment(setting)
        let cEnv = entries.map { strdup($0) } + [nil]
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
