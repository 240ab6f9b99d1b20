import ArgumentParser
import ClawflowModel
import ClawflowSpool

/// `clawflow tasks list`: the task ledger, newest first.
struct TasksList: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List tasks across all flows, newest first.",
        discussion: """
        Examples:
          clawflow tasks list --status running
          clawflow tasks list --json | jq '.tasks[] | select(.runtime == "cron")'
        """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Only tasks with this status.", valueName: "status"))
    var status: Word<TaskStatus>?

    func execute(_ out: Output) throws(SpoolError) {
        let wanted = try status.map { (s) throws(SpoolError) in try Parse.taskStatus(s.text) }
        var tasks: [TaskRecord] = []
        var failures: [String] = []
        if let spool = try readSpool() {
            for result in try spool.flows({ $0 }) {
                switch result {
                case .success(let snap):
                    tasks.append(contentsOf: snap.tasks)
                    failures.append(contentsOf: snap.problems.map(\.message))
                case .failure(let error):
                    failures.append(error.message)
                }
            }
        }
        let allIds = tasks.map(\.taskId).sorted()
        if let wanted { tasks = tasks.filter { $0.status == wanted } }
        tasks.sort { ($0.createdAt, $0.taskId) > ($1.createdAt, $1.taskId) }
        if out.json {
            var doc: [String: JSON] = ["count": .int(tasks.count), "tasks": .array(tasks.map { .object($0.fields) })]
            if !failures.isEmpty { doc["problems"] = .array(failures.map { .object(["message": .string($0)]) }) }
            out.emit(.object(JSONObject(doc)))
        } else if tasks.isEmpty {
            out.print("No tasks.")
        } else {
            out.table(["TASK", "FLOW", "RUNTIME", "STATUS", "OWNER", "LABEL"], tasks.map { t in
                [
                    Identifier.shortestUniquePrefix(of: t.taskId, among: allIds),
                    t.parentFlowId,
                    Render.cell(t.runtime, max: 16),
                    out.status(t.status.rawValue) + (t.cancelRequestedAt != nil && t.status.isActive ? "*" : ""),
                    Render.cell(t.ownerKey, max: 24),
                    Render.cell(t.label ?? t.task, max: 40),
                ]
            })
        }
        for f in failures { out.warn(sanitized(f)) }
        if !failures.isEmpty {
            throw SpoolError(.invalidRecord, "\(failures.count) record(s) could not be read; see the messages above. clawflow fsck lists every problem.")
        }
    }
}
