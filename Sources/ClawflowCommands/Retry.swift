import ArgumentParser
import ClawflowModel
import ClawflowRunner
import ClawflowSpool

/// `clawflow retry <lookup>`: run an ended command job again (pueue restart).
struct Retry: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Run a failed, cancelled, timed-out or lost command job again.",
        discussion: """
            The job runs again with the argv, working directory, environment and time limit that \
            were recorded, as a new task of the same flow (the old task and its log are kept); \
            the flow is queued in its queue again, and its events get a `retry`. A sequence goes \
            on from the step that did not succeed. Refused (exit 1) for a flow still active, one \
            that succeeded, and one whose tasks other programs report. Prints the flow id and the \
            new task id, as run does.

            Example:
              clawflow retry nightly && clawflow wait nightly
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("A flow id, owner key (its current or last flow), unique prefix, or task id / run id.", valueName: "lookup"))
    var lookup: String

    func execute(_ out: Output) throws(SpoolError) {
        guard let spool = try existingSpoolForWriting() else { throw SpoolError.flowNotFound(lookup) }
        let flowId: String
        do { flowId = try spool.resolveFlow(lookup) } catch  where error.code == .notFound {
            do { flowId = try spool.resolveTask(lookup).flowId } catch  where error.code == .notFound { throw SpoolError.flowNotFound(lookup) }
        }
        let started = try Runner(spool: spool).retry(flowId: flowId)
        if out.json {
            out.emit(.object(JSONObject(["flowId": .string(started.flowId), "taskId": .string(started.taskId)])))
        } else {
            out.print("\(started.flowId) \(started.taskId)")
        }
    }
}
