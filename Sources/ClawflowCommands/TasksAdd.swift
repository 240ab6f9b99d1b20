import ArgumentParser
import ClawflowModel
import ClawflowSpool

/// `clawflow tasks add`: record a task run reported by another program.
struct TasksAdd: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Add a task: link it to a flow, or start a new one-task flow for it; prints the task id.",
        discussion: """
            With a flow lookup the task is linked to that flow (refused when the flow is \
            finished, cancel-requested, mirrored, or owned by another key). Without one, --owner \
            is required and a new one-task (mirrored) flow is created whose status follows the task.

            Examples:
              clawflow tasks add --owner session-1 --runtime cron --label nightly \\
                  --status running
              clawflow tasks add 0196f3a2-7c41-7d2e --runtime subagent \\
                  --label "step 2" --run-id run-42
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The flow to link the task to (id, owner key or prefix).", valueName: "flow"))
    var flow: String?

    @Option(help: ArgumentHelp("The owner key; required without a flow, must match the flow's with one.", valueName: "key"))
    var owner: String?

    @Option(help: ArgumentHelp("Who runs the task: [a-z0-9_-]{1,32}, e.g. subagent, acp, cron.", valueName: "name"))
    var runtime: String

    @Option(help: ArgumentHelp("A short label.", valueName: "text"))
    var label: String?

    @Option(help: ArgumentHelp("What the task does.", valueName: "text"))
    var task: String?

    @Option(name: .customLong("run-id"), help: ArgumentHelp("The reporter's run id, usable as a task lookup.", valueName: "id"))
    var runId: String?

    @Option(name: .customLong("task-id"), help: ArgumentHelp("Choose the task id (a lowercase UUID not yet used).", valueName: "uuid"))
    var taskId: String?

    @Option(help: ArgumentHelp("Initial status.", valueName: "status"))
    var status = Word<TaskStatus>(argument: "queued")

    @Option(
        name: .customLong("on-change"),
        help: ArgumentHelp(
            "Run this shell command (sh -c) on each status change of the task (its policy becomes state_changes), with its record on stdin.",
            valueName: "cmd"))
    var onChange: String?

    func execute(_ out: Output) throws(SpoolError) {
        var new = NewTask(runtime: try Parse.runtime(runtime), status: try Parse.taskStatus(status.text))
        if let onChange {
            guard !onChange.trimmingWhitespace().isEmpty else { throw Parse.usage("--on-change needs a command.") }
            new[.notifyCommand] = .string(try Parse.text(onChange, option: "--on-change"))
            new[.notifyPolicy] = .string(NotifyPolicy.stateChanges.rawValue)
        }
        new.taskId = try taskId.map { (t) throws(SpoolError) in try Parse.taskId(t) }
        if let label { new[.label] = .string(try Parse.text(label, option: "--label")) }
        if let task { new[.task] = .string(try Parse.text(task, option: "--task")) }
        if let runId { new[.runId] = .string(try Parse.text(runId, option: "--run-id")) }
        let key = try owner.map { (o) throws(SpoolError) in try Parse.ownerKey(o) }
        let result: (snapshot: FlowSnapshot, taskId: String)
        if let flow {
            guard let spool = try existingSpoolForWriting() else {
                throw SpoolError.flowNotFound(flow.trimmingWhitespace())
            }
            let flowId = try spool.resolveFlow(flow)
            result = try spool.addTask(toFlow: flowId, ownerKey: key, task: new, source: "cli")
        } else {
            guard let key else { throw Parse.usage("Give a flow to link the task to, or --owner to start a new flow for it.") }
            result = try writeSpool().addTaskInNewFlow(ownerKey: key, task: new, goal: nil, source: "cli")
        }
        if out.json {
            out.emit(.object(result.snapshot.tasks.first { $0.taskId == result.taskId }!.fields))
        } else {
            out.print(result.taskId)
        }
    }
}
