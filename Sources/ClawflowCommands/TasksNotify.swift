import ArgumentParser
import ClawflowModel
import ClawflowSpool

/// `clawflow tasks notify`: change when a task's hooks are told of its changes.
struct TasksNotify: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "notify",
        abstract: "Change a task's notify policy: done_only, state_changes or silent.",
        discussion: """
            done_only tells the hooks once, when the task ends; state_changes on every status \
            change; silent never. The hooks are the task's own (tasks add --on-change, run \
            --on-finish) and the spool's (executables in <spool>/hooks/); see README, \
            "Notification hooks". For a one-task flow the flow's policy changes with it.

            Examples:
              clawflow tasks notify run-42 state_changes
              clawflow tasks notify 0196f3a2-9b10-7c11 silent
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("A task id, unique prefix (8+ characters) or run id.", valueName: "task"))
    var task: String

    @Argument(help: ArgumentHelp("done_only, state_changes or silent.", valueName: "policy"))
    var policy: String

    func execute(_ out: Output) throws(SpoolError) {
        guard let chosen = NotifyPolicy(rawValue: policy) else {
            throw Parse.usage(
                "Unknown notify policy \"\(sanitized(policy))\"; expected one of \(NotifyPolicy.allCases.map(\.rawValue).joined(separator: ", ")).")
        }
        guard let spool = try existingSpoolForWriting() else { throw SpoolError.taskNotFound(task) }
        let (flowId, taskId) = try spool.resolveTask(task)
        let snap = try spool.mutate(flow: flowId, source: "cli") { (change) throws(SpoolError) in
            guard var record = change.tasks[taskId] else { throw SpoolError.taskNotFound(taskId) }
            record[.notifyPolicy] = .string(chosen.rawValue)
            change.tasks[taskId] = record
            if change.flow.syncMode == .taskMirrored { change.flow[.notifyPolicy] = .string(chosen.rawValue) }
        }.snapshot
        let record = snap.tasks.first { $0.taskId == taskId }!
        if out.json {
            out.emit(.object(record.fields))
        } else {
            out.print("Task \(taskId) now notifies: \(chosen.rawValue).")
        }
    }
}
