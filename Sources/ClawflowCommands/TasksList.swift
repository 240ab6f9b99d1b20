import ArgumentParser
import ClawflowModel
import ClawflowSpool

/// `clawflow tasks list`: the task ledger, newest first.
struct TasksList: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List tasks across all flows, newest first.",
        discussion: """
            --owner, --flow, --runtime and --queue keep only the tasks of that owner key, of that \
            flow (a flow lookup: id, owner key or id prefix), reported by that runtime (cli for \
            commands clawflow runs), or of jobs in that queue; given together, a task must match \
            them all.

            Examples:
              clawflow tasks list --status running
              clawflow tasks list --queue default --runtime cli
              clawflow tasks list --json | jq '.tasks[] | select(.runtime == "cron")'
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Only tasks with this status.", valueName: "status"))
    var status: Word<TaskStatus>?

    @Option(help: ArgumentHelp("Only tasks of this owner key.", valueName: "key"))
    var owner: String?

    @Option(help: ArgumentHelp("Only tasks of this flow (id, owner key, or unique id prefix).", valueName: "lookup"))
    var flow: String?

    @Option(help: ArgumentHelp("Only tasks of this runtime (cli: commands clawflow runs).", valueName: "runtime"))
    var runtime: String?

    @Option(help: ArgumentHelp("Only tasks of jobs in this queue.", valueName: "name"))
    var queue: String?

    func execute(_ out: Output) throws(SpoolError) {
        let wanted = try status.map { (s) throws(SpoolError) in try Parse.taskStatus(s.text) }
        let ownerKey = try owner.map { (o) throws(SpoolError) in try Parse.ownerKey(o) }
        let runtime = try runtime.map { (r) throws(SpoolError) in try Parse.runtime(r, reported: false) }
        let queue = try queue.map { (q) throws(SpoolError) in try Parse.queueName(q) }
        var tasks: [TaskRecord] = []
        var failures: [String] = []
        let spool = try readSpool()
        let flowId = try flow.map { (lookup) throws(SpoolError) in
            guard let spool else { throw SpoolError.flowNotFound(lookup.trimmingWhitespace()) }
            return try spool.resolveFlow(lookup)
        }
        if let spool {
            for result in try spool.flows({ $0 }) {
                switch result {
                case .success(let snap):
                    if let flowId, snap.flow.flowId != flowId { continue }
                    if let queue, snap.flow.queue != queue { continue }
                    tasks.append(contentsOf: snap.tasks)
                    failures.append(contentsOf: snap.problems.map(\.message))
                case .failure(let error):
                    failures.append(error.message)
                }
            }
        }
        let allIds = tasks.map(\.taskId).sorted()
        if let wanted { tasks = tasks.filter { $0.status == wanted } }
        if let ownerKey { tasks = tasks.filter { $0.ownerKey == ownerKey } }
        if let runtime { tasks = tasks.filter { $0.runtime == runtime } }
        tasks.sort { ($0.createdAt, $0.taskId) > ($1.createdAt, $1.taskId) }
        if out.json {
            var doc: [String: JSON] = ["count": .int(tasks.count), "tasks": .array(tasks.map { .object($0.fields) })]
            if !failures.isEmpty { doc["problems"] = .array(failures.map { .object(["message": .string($0)]) }) }
            out.emit(.object(JSONObject(doc)))
        } else if tasks.isEmpty {
            out.print("No tasks.")
        } else {
            out.table(
                ["TASK", "FLOW", "RUNTIME", "STATUS", "OWNER", "LABEL"],
                tasks.map { t in
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
