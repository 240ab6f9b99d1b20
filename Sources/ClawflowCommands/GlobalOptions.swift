import ArgumentParser
import ClawflowModel
import ClawflowRunner
import ClawflowSpool
import Glibc
import SystemPackage

/// Options every command takes: where the spool is, and whether to print JSON.
public struct GlobalOptions: ParsableArguments, Sendable {
    /// The spool directory.
    @Option(
        name: .long, help: ArgumentHelp("The spool directory (default: $CLAWFLOW_SPOOL, else ${XDG_STATE_HOME:-~/.local/state}/clawflow).", valueName: "dir"))
    public var spool: String?

    /// Print one JSON document instead of text.
    @Flag(name: .long, help: "Print one JSON document (sorted keys) instead of text; errors become {\"ok\": false, \"error\": {...}}.")
    public var json = false

    /// Creates the options with their defaults.
    public init() {}

    /// The spool path: --spool, else $CLAWFLOW_SPOOL, else ${XDG_STATE_HOME:-~/.local/state}/clawflow.
    public var spoolPath: FilePath {
        if let s = spool, !s.isEmpty { return FilePath(s) }
        if let s = environment("CLAWFLOW_SPOOL"), !s.isEmpty { return FilePath(s) }
        if let s = environment("XDG_STATE_HOME"), !s.isEmpty { return FilePath(s).appending("clawflow") }
        let home = environment("HOME") ?? "/root"
        return FilePath(home).appending(".local/state/clawflow")
    }
}

/// An environment variable, or nil.
func environment(_ name: String) -> String? {
    guard let v = getenv(name) else { return nil }
    return String(cString: v)
}

/// A command that works on the spool; failures are printed by `Output` with their exit code.
protocol SpoolCommand: ParsableCommand {
    /// The shared options.
    var global: GlobalOptions { get }
    /// Does the command's work.
    func execute(_ out: Output) throws(SpoolError)
    /// The queue whose slots `execute` has just handed on when it succeeded (`run`): the hand-off
    /// after it leaves that queue out rather than lock it and read its jobs a second time.
    var queueHandedOff: String? { get }
}

extension SpoolCommand {
    /// Runs `execute`, printing a failure as text or a JSON error object and exiting 1 (64 for usage).
    func run() throws {
        FileDescriptor.flushHelpersAreShortLived()  // a command exits soon after its writes
        let out = Output(json: global.json)
        do {
            try execute(out)
        } catch {
            out.fail(error)
            handOffSlots()
            throw ExitCode(error.code == .usage ? 64 : 1)
        }
        handOffSlots(except: queueHandedOff)
    }

    /// No queue handed on by `execute` itself.
    var queueHandedOff: String? { nil }

    /// Hands on the slots of queues whose jobs wait (spool-layout.md, "Queues"): any command
    /// does, after its own work, so a slot freed by a supervisor that died is used without a
    /// watcher. Forks the supervisors it starts: this process's other threads are idle here.
    func handOffSlots(except handedOff: String? = nil) {
        guard let spool = try? Spool.openExisting(at: global.spoolPath) else { return }
        Runner(spool: spool).handOffWaiting(except: handedOff)
        // Notifications recorded and not delivered (README.md, "Notification hooks").
        Deliverer.kick(spool, source: "cli")
    }

    /// The spool for reading, or nil when it does not exist yet (an empty result).
    func readSpool() throws(SpoolError) -> Spool? { try Spool.openExisting(at: global.spoolPath) }

    /// The spool for a write that needs an existing spool (nil when there is none): its
    /// layout is made whole first, derived directories rebuilt.
    func existingSpoolForWriting() throws(SpoolError) -> Spool? { try Spool.openExisting(at: global.spoolPath, forWriting: true) }

    /// The spool for writing, created on first use.
    func writeSpool() throws(SpoolError) -> Spool { try Spool.open(at: global.spoolPath) }
}

/// Parsing helpers for argument values; each failure is a usage error (exit 64).
enum Parse {
    static func usage(_ message: String) -> SpoolError { SpoolError(.usage, message) }

    static func ownerKey(_ raw: String) throws(SpoolError) -> String {
        do { return try OwnerKey.validate(raw) } catch { throw usage("Invalid owner key: \(error.description).") }
    }

    static func taskStatus(_ raw: String) throws(SpoolError) -> TaskStatus {
        guard let s = TaskStatus(rawValue: raw) else {
            throw usage("Unknown task status \"\(sanitized(raw))\"; expected one of \(TaskStatus.allNames).")
        }
        return s
    }

    static func flowStatus(_ raw: String) throws(SpoolError) -> FlowStatus {
        guard let s = FlowStatus(rawValue: raw) else {
            throw usage("Unknown flow status \"\(sanitized(raw))\"; expected one of \(FlowStatus.allNames).")
        }
        return s
    }

    /// A JSON option's value; it is stored one level down in a record, so it may nest one
    /// level less than the parser reads back.
    static func json(_ raw: String, option: String) throws(SpoolError) -> JSON {
        let value: JSON
        do { value = try JSON.parse(raw) } catch { throw usage("\(option) is not valid JSON: \(error.description).") }
        guard value.deepestLevel(from: 1) <= JSON.maxDepth else {
            throw usage("\(option) nests values deeper than a record can hold (at most \(JSON.maxDepth - 1) levels).")
        }
        return value
    }

    /// A runtime name; `cli` only when `reported` is false (a filter, not a program's report).
    static func runtime(_ raw: String, reported: Bool = true) throws(SpoolError) -> String {
        guard RuntimeName.isValid(raw) else { throw usage("Invalid runtime \"\(sanitized(raw))\"; it must match [a-z0-9_-]{1,32}.") }
        guard !reported || raw != "cli" else {
            throw usage("The runtime cli is reserved for commands clawflow runs itself; name the program that reports this task instead.")
        }
        return raw
    }

    static func queueName(_ raw: String) throws(SpoolError) -> String {
        guard QueueName.isValid(raw) else { throw usage("Invalid queue name \"\(sanitized(raw))\"; it must match [a-z0-9_-]{1,32}.") }
        return raw
    }

    static func taskId(_ raw: String) throws(SpoolError) -> String {
        guard Identifier.isValid(raw) else { throw usage("Invalid task id \"\(sanitized(raw))\"; it must be a lowercase UUID.") }
        return raw
    }

    /// A duration option's value in seconds (`90`, `30s`, `10m`, `1h30m`, `7d`).
    static func duration(_ raw: String, option: String) throws(SpoolError) -> Int64 {
        guard let seconds = DurationText.seconds(raw) else {
            let text = raw.trimmingWhitespace()
            if text.hasPrefix("-"), DurationText.seconds(String(text.dropFirst())) != nil {
                throw usage(
                    "Invalid duration \"\(sanitized(raw))\" for \(option): it is negative; use 0 or more seconds, or a number with s, m, h, d (30s, 10m).")
            }
            throw usage("Invalid duration \"\(sanitized(raw))\" for \(option); use seconds or a number with s, m, h, d (30s, 10m).")
        }
        return seconds
    }

    static func text(_ raw: String, option: String) throws(SpoolError) -> String {
        guard !raw.unicodeScalars.contains(where: { $0.value == 0 }) else { throw usage("\(option) contains a NUL character.") }
        return raw
    }
}
