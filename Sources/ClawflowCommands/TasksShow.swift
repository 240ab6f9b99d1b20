import ArgumentParser
import ClawflowModel
import ClawflowSpool

/// `clawflow tasks show <task>`: one task record.
struct TasksShow: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show one task.",
        discussion: """
            Examples:
              clawflow tasks show run-42
              clawflow tasks show 0196f3a2-9b10 --json | jq .status
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("A task id, unique prefix (8+ characters) or run id; or a flow (an owner key): its current command task.", valueName: "task"))
    var task: String

    func execute(_ out: Output) throws(SpoolError) {
        guard let spool = try readSpool() else { throw SpoolError.taskNotFound(task) }
        let (flowId, taskId) = try spool.resolveTaskOrFlow(task)
        let record = try spool.task(flowId: flowId, taskId: taskId)
        if out.json {
            out.emit(.object(record.fields))
            return
        }
        out.print(out.bold("Task \(record.taskId)") + "  " + out.status(record.status.rawValue))
        let order = [
            "parentFlowId", "ownerKey", "runtime", "label", "task", "runId", "childSessionKey", "notifyPolicy",
            "progressSummary", "terminalSummary", "terminalOutcome", "error", "exitCode", "createdAt", "startedAt",
            "lastEventAt", "endedAt", "cancelRequestedAt",
        ]
        let known = Set(order + ["taskId", "status", "schema", "environment"])
        let rows0 = (order + record.fields.keys.filter { !known.contains($0) }.sorted()).compactMap { key -> (String, String)? in
            guard let value = record.fields[key], !value.isNull else { return nil }
            return (sanitized(key) + ":", sanitized(value.stringValue ?? value.compact()))
        }
        // The values start in one column: that of flows show, or two spaces after a longer key.
        var rows = rows0
        if let env = record.environment { rows.append(("environment:", "\(env.count) variables (--json shows them)")) }
        let width = max(18, (rows.map(\.0.count).max() ?? 0) + 2)
        for (key, text) in rows { out.print("  " + key.padding(width) + text) }
    }
}
