import ArgumentParser
import ClawflowModel
import ClawflowSpool

/// `clawflow tasks cancel <task>`: ask one task to stop.
struct TasksCancel: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Ask one task to stop.",
        discussion: """
        For a task reported by another program, records cancelRequestedAt in its task file \
        (its runner sees it and answers with its final status) and exits 1 until it does.

        Example:
          clawflow tasks cancel run-42
        """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("A task id, unique prefix (8+ characters) or run id.", valueName: "task"))
    var task: String

    func execute(_ out: Output) throws(SpoolError) {
        guard let spool = try readSpool() else { throw SpoolError.taskNotFound(task) }
        let (flowId, taskId) = try spool.resolveTask(task)
        let record = try spool.requestTaskCancel(flowId: flowId, taskId: taskId, source: "cli")
        if !out.json {
            out.print("Cancel requested for task \(taskId) (\(record.runtime)); it stays \(record.status.rawValue) until its runner answers.")
        }
        throw SpoolError(.stillActive, "Task \(taskId) is still active; its runner has been asked to stop.", current: .object(record.fields))
    }
}
