import ClawflowModel
import SystemPackage

/// The spool's directories (spool-layout.md, "Directories"): the one spelling of each path,
/// relative to the spool root, in the order `init` creates them (a parent before its children).
public enum SpoolDirectory: String, Sendable, CaseIterable {
    /// `flows/`: one directory per flow.
    case flows
    /// `owners/`: a link per owner key to its current flow.
    case owners
    /// `index/`: the derived indexes.
    case index
    /// `index/owners/`: every flow of each owner key.
    case ownerIndex = "index/owners"
    /// `index/tasks/`: the flow holding each task.
    case taskIndex = "index/tasks"
    /// `index/runs/`: the tasks of each run id.
    case runIndex = "index/runs"
    /// `incoming/`: the drop box.
    case incoming
    /// `incoming/tmp/`: drops being written.
    case dropStaging = "incoming/tmp"
    /// `incoming/new/`: drops waiting to be applied.
    case newDrops = "incoming/new"
    /// `incoming/claimed/`: drops being applied.
    case claimedDrops = "incoming/claimed"
    /// `incoming/applied/`: a record per applied drop.
    case appliedDrops = "incoming/applied"
    /// `rejected/`: refused drops and their reasons.
    case rejected
    /// `tmp/`: flows being staged.
    case staging = "tmp"
    /// `run/`: the watcher's pid file.
    case run
    /// `cancel/`: the cancel markers of external tasks.
    case cancel
    /// `queues/`: a directory per queue, its slots and its jobs.
    case queues
    /// `notify/`: a file per notification not yet delivered to its hooks.
    case notify
    /// `notify/failed/`: deliveries whose hooks kept failing.
    case failedNotify = "notify/failed"

    /// Its path below the spool at `root`.
    public func path(in root: FilePath) -> FilePath { root.appending(rawValue) }
}

/// A directory the watcher watches, told from its path by `Layout.watchedPlace`.
public enum WatchedPlace: Sendable, Equatable {
    /// `incoming/new/`.
    case newDrops
    /// `flows/`.
    case flows
    /// `flows/<flowId>/tasks/`.
    case tasks(flowId: String)
    /// `notify/`.
    case notify
}

/// Names of the spool's directories and files (spool-layout.md, "Directories").
public enum Layout {
    /// The name of the file whose text says the spool's version (written last by `init`).
    public static let versionFile = "VERSION"
    /// Text of the `VERSION` file.
    public static let versionText = "clawflow-spool 1\n"
    /// Root-level directories created by `init`, in order.
    public static let directories = SpoolDirectory.allCases.map(\.rawValue)
    /// The watcher's pid file in `run/`, flocked while a watcher runs.
    public static let watchPidFile = "watch.pid"
    /// The file in `index/runs` whose presence says every task with a run id is indexed there.
    public static let runIndexComplete = ".complete"
    /// A flow's manifest file name.
    public static let manifest = "manifest.json"
    /// A flow's event log file name.
    public static let events = "events.jsonl"
    /// A flow's task directory name.
    public static let tasks = "tasks"
    /// Largest record clawflow reads (1 MiB).
    public static let recordLimit = 1_048_576

    /// The directory of cancel markers, readable by a shared spool's group.
    public static let cancelDirectory = SpoolDirectory.cancel.rawValue
    /// The file name of a task's cancel marker in `cancel/`.
    public static func cancelMarker(_ taskId: String) -> String { taskId + ".json" }
    /// The file name of a task record.
    public static func taskFile(_ taskId: String) -> String { taskId + ".json" }
    /// Whether `name` in `tasks/` is a task record's (`<taskId>.json`; the id is not checked).
    public static func isTaskFile(_ name: String) -> Bool { name.hasSuffix(".json") }
    /// The file name of a task's output log.
    public static func taskLog(_ taskId: String) -> String { taskId + ".log" }
    /// The task id a file name in `tasks/` belongs to (`<taskId>.json` or `<taskId>.log`), or
    /// nil when the name is neither.
    public static func taskId(fromTaskFile name: String) -> String? {
        let id = name.hasSuffix(".json") ? String(name.dropLast(5)) : name.hasSuffix(".log") ? String(name.dropLast(4)) : ""
        return Identifier.isValid(id) ? id : nil
    }
    /// The path of a flow's directory below the spool at `root`.
    public static func flowPath(_ flowId: String, in root: FilePath) -> FilePath { SpoolDirectory.flows.path(in: root).appending(flowId) }
    /// The path of a flow's `tasks/` directory below the spool at `root`.
    public static func tasksPath(flowId: String, in root: FilePath) -> FilePath { flowPath(flowId, in: root).appending(tasks) }

    /// Which watched directory `path` is in the spool at `root`, or nil for any other.
    public static func watchedPlace(_ path: String, in root: FilePath) -> WatchedPlace? {
        let path = FilePath(path)
        if path == SpoolDirectory.newDrops.path(in: root) { return .newDrops }
        if path == SpoolDirectory.notify.path(in: root) { return .notify }
        let flows = SpoolDirectory.flows.path(in: root)
        if path == flows { return .flows }
        guard path.lastComponent?.string == tasks, path.removingLastComponent().removingLastComponent() == flows,
            let flowId = path.removingLastComponent().lastComponent?.string, Identifier.isValid(flowId)
        else { return nil }
        return .tasks(flowId: flowId)
    }

    /// A queue's settings file in `queues/<name>/`.
    public static let queueSettings = "queue.json"
    /// The directory of a queue's jobs waiting for a slot, in start order by name.
    public static let queueWaiting = "waiting"
    /// The directory of a queue's jobs holding a slot, one entry per flow id.
    public static let queueRunning = "running"
    /// The queue a `run` without `--queue` goes to.
    public static let defaultQueue = "default"
    /// Priorities a job may have (higher starts first).
    public static let priorityRange: ClosedRange<Int64> = -9999...9999
    /// The suffix of the waiting entry of a job that runs after other flows (`run --after`).
    public static let runsAfterSuffix = ".after"
    /// The name of a waiting job's entry: its start order (priority, highest first, then the
    /// flow id, which orders by arrival), `<10000 - priority, five digits>.<flowId>`, and
    /// `.after` when the job runs after other flows.
    public static func waitingEntry(flowId: String, priority: Int64, runsAfter: Bool) -> String {
        let rank = String(10000 - priority)
        return String(repeating: "0", count: max(0, 5 - rank.count)) + rank + "." + flowId + (runsAfter ? runsAfterSuffix : "")
    }
    /// The waiting entry of `flow`.
    public static func waitingEntry(of flow: FlowRecord) -> String {
        waitingEntry(flowId: flow.flowId, priority: flow.priority, runsAfter: !flow.after.isEmpty)
    }
    /// A waiting entry's name read: the flow id, and whether the job runs after other flows;
    /// nil when the name is not one.
    public static func waitingJob(fromEntry name: String) -> (flowId: String, runsAfter: Bool)? {
        // Read as bytes: a hand-off reads every name of a queue's backlog.
        let bytes = Array(name.utf8)
        let idEnd = 6 + 36
        guard bytes.count == idEnd || bytes.count == idEnd + runsAfterSuffix.utf8.count, bytes[5] == UInt8(ascii: "."),
            bytes[..<5].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else { return nil }
        let runsAfter = bytes.count > idEnd
        guard !runsAfter || bytes[idEnd...].elementsEqual(runsAfterSuffix.utf8) else { return nil }
        let id = String(decoding: bytes[6..<idEnd], as: UTF8.self)
        return Identifier.isValid(id) ? (id, runsAfter) : nil
    }

    /// The spool-wide hooks directory (not made by `init`: a person puts executables there).
    public static let hooksDirectory = "hooks"
    /// The file name of a delivery in `notify/` (and `notify/failed/`).
    public static func deliveryFile(_ deliveryId: String) -> String { deliveryId + ".json" }
    /// The delivery id of a name in `notify/`, or nil when the name is not a delivery's.
    public static func deliveryId(fromFile name: String) -> String? {
        guard name.hasSuffix(".json") else { return nil }
        let id = String(name.dropLast(5))
        return Identifier.isValid(id) ? id : nil
    }

    /// The delivery id of a temp file of a delivery (`.<deliveryId>.json.<pid>.<hex>.tmp`), or nil.
    public static func deliveryId(fromTemp name: String) -> String? {
        guard tempWriterPid(name) != nil else { return nil }
        let parts = name.dropFirst().split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[1] == "json" else { return nil }
        return Identifier.isValid(String(parts[0])) ? String(parts[0]) : nil
    }

    /// The text of a link to a flow from `owners/`.
    public static func ownerLinkTarget(_ flowId: String) -> String { "../flows/" + flowId }
    /// The flow id an `owners/` link names, or nil when the text is anything but `../flows/<id>`.
    public static func flowId(fromOwnerLink text: String) -> String? { flowId(after: "../flows/", in: text) }
    /// The text of an `index/tasks` entry: the flow holding the task.
    public static func taskIndexTarget(_ flowId: String) -> String { "../../flows/" + flowId }
    /// The text of an entry in a keyed index (`index/owners/<name>/`, `index/runs/<name>/`).
    public static func keyedIndexTarget(_ flowId: String) -> String { "../../../flows/" + flowId }
    /// The flow id an `index/tasks` entry names, or nil.
    public static func flowId(fromTaskIndex text: String) -> String? { flowId(after: "../../flows/", in: text) }
    /// The flow id a keyed index entry names, or nil.
    public static func flowId(fromKeyedIndex text: String) -> String? { flowId(after: "../../../flows/", in: text) }

    private static func flowId(after prefix: String, in text: String) -> String? {
        guard text.hasPrefix(prefix) else { return nil }
        let id = String(text.dropFirst(prefix.count))
        return Identifier.isValid(id) ? id : nil
    }

    /// The text of an `incoming/applied/<name>` record: the flow the drop went to and the
    /// SHA-256 of its bytes, `../../flows/<flowId>#<hex>`.
    public static func appliedRecord(flowId: String, digest: String) -> String { "../../flows/\(flowId)#\(digest)" }
    /// The flow and digest an applied record names; the digest is nil in a record written
    /// before records carried one. Nil when the text is anything else.
    public static func appliedRecord(_ text: String) -> (flowId: String, digest: String?)? {
        let parts = text.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)
        guard let flowId = flowId(after: "../../flows/", in: String(parts[0])) else { return nil }
        return (flowId, parts.count == 2 ? String(parts[1]) : nil)
    }

    /// The name of a drop's record in `incoming/applied/`: its name, and for a drop of another
    /// user than clawflow's, `:<uid>` after it (`:` never occurs in a drop name), so that
    /// names are idempotency keys per user.
    public static func appliedRecordName(_ name: String, uid: UInt32?) -> String { uid.map { "\(name):\($0)" } ?? name }

    /// The name of the pending-link marker of an owner link name.
    public static func pendingOwnerLink(_ name: String) -> String { "." + name + ".next" }
    /// The owner link name a pending marker belongs to, or nil.
    public static func ownerName(fromPending marker: String) -> String? {
        guard marker.hasPrefix("."), marker.hasSuffix(".next"), marker.utf8.count > 6 else { return nil }
        return String(marker.dropFirst().dropLast(5))
    }

    /// A unique dot-prefixed temp name for `name`, carrying the writer's pid.
    static func tempName(for name: String, pid: Int32) -> String {
        var rng = SystemRandomNumberGenerator()
        // Hex by hand: `String(_:radix:)` is generic code that the runtime resolves on first use.
        let value = rng.next() as UInt32
        var hex: [UInt8] = []
        for shift in stride(from: 28, through: 0, by: -4) where value >> UInt32(shift) != 0 || shift == 0 {
            let digit = UInt8(truncatingIfNeeded: value >> UInt32(shift)) & 15
            hex.append(digit < 10 ? UInt8(ascii: "0") + digit : UInt8(ascii: "a") + digit - 10)
        }
        return ".\(name).\(pid).\(String(decoding: hex, as: UTF8.self)).tmp"
    }

    /// The name of a flow's staging directory under `tmp/` while it is being built.
    static func stagingName(flowId: String, pid: Int32) -> String { "\(flowId).\(pid)" }

    /// The builder pid a staging directory name carries, or nil.
    public static func stagingPid(_ name: String) -> Int32? {
        let parts = name.split(separator: ".")
        guard parts.count == 2, Identifier.isValid(String(parts[0])) else { return nil }
        return Int32(parts[1])
    }

    /// The writer pid a temp name carries, or nil when `name` is not one of clawflow's temp names.
    public static func tempWriterPid(_ name: String) -> Int32? {
        guard name.hasPrefix("."), name.hasSuffix(".tmp") else { return nil }
        let parts = name.dropLast(4).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 3 else { return nil }
        return Int32(parts[parts.count - 2])
    }
}
