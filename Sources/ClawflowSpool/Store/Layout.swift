import ClawflowModel
import SystemPackage

/// Names of the spool's directories and files (spool-layout.md, "Directories").
public enum Layout {
    /// Text of the `VERSION` file.
    public static let versionText = "clawflow-spool 1\n"
    /// Root-level directories created by `init`.
    public static let directories = ["flows", "owners", "index", "index/owners", "index/tasks", "index/runs", "incoming", "incoming/tmp", "incoming/new", "incoming/claimed", "incoming/applied", "rejected", "tmp", "run", "cancel"]
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
    public static let cancelDirectory = "cancel"
    /// The file name of a task's cancel marker in `cancel/`.
    public static func cancelMarker(_ taskId: String) -> String { taskId + ".json" }
    /// The file name of a task record.
    public static func taskFile(_ taskId: String) -> String { taskId + ".json" }
    /// The file name of a task's output log.
    public static func taskLog(_ taskId: String) -> String { taskId + ".log" }
    /// The task id a file name in `tasks/` belongs to (`<taskId>.json` or `<taskId>.log`), or
    /// nil when the name is neither.
    public static func taskId(fromTaskFile name: String) -> String? {
        let id = name.hasSuffix(".json") ? String(name.dropLast(5)) : name.hasSuffix(".log") ? String(name.dropLast(4)) : ""
        return Identifier.isValid(id) ? id : nil
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
        return ".\(name).\(pid).\(String(rng.next() as UInt32, radix: 16)).tmp"
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
