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
            (its runner sees it and answers with its final status) and exits 1 until it does. A \
            command started with clawflow run gets SIGTERM to its process group, SIGKILL after \
            --grace, and is recorded cancelled (a sequence then stops: its flow fails).

            Example:
              clawflow tasks cancel run-42
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("A task id, unique prefix (8+ characters) or run id.", valueName: "task"))
    var task: String

    @Option(parsing: .unconditional, help: ArgumentHelp("How long a command task gets between SIGTERM and SIGKILL (e.g. 10, 30s, 1m).", valueName: "duration"))
    var grace: String = "10s"

    func execute(_ out: Output) throws(SpoolError) {
        let graceSeconds = try Parse.duration(grace, option: "--grace")
        guard let spool = try existingSpoolForWriting() else { throw SpoolError.taskNotFound(task) }
        let (flowId, taskId) = try spool.resolveTask(task)
        let outcome = try spool.cancel(flowId: flowId, taskId: taskId, grace: Double(graceSeconds), source: "cli")
        guard let record = outcome.snapshot.task(taskId) else { throw SpoolError.taskNotFound(taskId) }
        if record.isCommand {
            if out.json {
                out.emit(.object(record.fields))
            } else {
                out.print("Cancelled task \(taskId) (cli) with status \(out.status(record.status.rawValue)).")
            }
            return
        }
        if !out.json {
            out.print("Cancel requested for task \(taskId) (\(record.runtime)); it stays \(record.status.rawValue) until its runner answers.")
        }
        throw SpoolError(.stillActive, "Task \(taskId) is still active; its runner has been asked to stop.", current: .object(record.fields))
    }
}
