import ArgumentParser
import ClawflowModel
import ClawflowSpool

/// `clawflow tasks set`: report a task's state change.
struct TasksSet: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "set",
        abstract: "Report a state change of a task; its flow follows the rules.",
        discussion: """
            Once a task is final it stays final: only succeeded may later become failed, \
            timed_out or cancelled. A report on a final task is ignored, recorded in the flow's \
            events.jsonl, and the command exits 1 saying the task is already final.

            Examples:
              clawflow tasks set run-42 --status running --progress "fetching"
              clawflow tasks set 0196f3a2-9b10-7c11 --status succeeded \\
                  --summary "3 files written"
              clawflow tasks set run-42 --status succeeded --outcome blocked \\
                  --summary "needs a login"
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("A task id, unique prefix (8+ characters) or run id.", valueName: "task"))
    var task: String

    @Option(help: ArgumentHelp("The new status; leave it out to report progress or a field only.", valueName: "status"))
    var status: Word<TaskStatus>?

    @Option(help: ArgumentHelp("A progress summary.", valueName: "text"))
    var progress: String?

    @Option(help: ArgumentHelp("A terminal summary.", valueName: "text"))
    var summary: String?

    @Option(help: ArgumentHelp("An error message.", valueName: "text"))
    var error: String?

    @Option(help: ArgumentHelp("The outcome: blocked (a mirrored flow then ends blocked).", valueName: "outcome"))
    var outcome: String?

    func validate() throws {
        if status == nil, progress == nil, summary == nil, error == nil, outcome == nil {
            throw ValidationError("Give --status, or --progress, --summary, --error or --outcome to report without a status change.")
        }
    }

    func execute(_ out: Output) throws(SpoolError) {
        var update = TaskUpdate(status: try status.map { (s) throws(SpoolError) in try Parse.taskStatus(s.text) })
        if let progress { update[.progressSummary] = .string(try Parse.text(progress, option: "--progress")) }
        if let summary { update[.terminalSummary] = .string(try Parse.text(summary, option: "--summary")) }
        if let error { update[.error] = .string(try Parse.text(error, option: "--error")) }
        if let outcome {
            guard outcome == "blocked" else { throw Parse.usage("Unknown outcome \"\(sanitized(outcome))\"; the only outcome is blocked.") }
            update[.terminalOutcome] = "blocked"
        }
        guard let spool = try existingSpoolForWriting() else { throw SpoolError.taskNotFound(task) }
        let (flowId, taskId) = try spool.resolveTask(task)
        let (outcomeResult, snap) = try spool.updateTask(flowId: flowId, taskId: taskId, update: update, source: "cli")
        let record = snap.tasks.first { $0.taskId == taskId }!
        if case .ignored = outcomeResult {
            throw SpoolError(
                .alreadyTerminal, "Task \(taskId) is already \(record.status.rawValue); the report was ignored and logged.", current: .object(record.fields))
        }
        if out.json {
            out.emit(.object(record.fields))
        } else {
            out.print("Task \(taskId) is \(out.status(record.status.rawValue)); flow \(snap.flow.flowId) is \(out.status(snap.flow.status.rawValue)).")
        }
    }
}
