import ArgumentParser
import ClawflowModel
import ClawflowSpool

/// Options every controller command takes (`flows set-waiting|resume|finish|fail|request-cancel`).
struct ControllerOptions: ParsableArguments {
    @Argument(help: ArgumentHelp("The managed flow (id, owner key or unique id prefix).", valueName: "flow"))
    var flow: String

    @Option(
        name: .customLong("expect-revision"),
        help: ArgumentHelp("The flow revision this change is based on; a stale one changes nothing (revision_conflict).", valueName: "n"))
    var expectRevision: Int64

    @Option(help: ArgumentHelp("Set the flow's currentStep in the same write.", valueName: "name"))
    var step: String?

    @Option(
        name: .customLong("state-json"), help: ArgumentHelp("Store the controller's state (any JSON; null clears it) in the same write.", valueName: "json"))
    var stateJson: String?
}

/// A checked write of an external controller on a managed flow: one shared `execute`.
protocol ControllerCommand: SpoolCommand {
    var control: ControllerOptions { get }
    /// The transition the command asks for.
    func transition() throws(SpoolError) -> ControllerTransition
}

extension ControllerCommand {
    func execute(_ out: Output) throws(SpoolError) {
        guard control.expectRevision >= 0 else { throw Parse.usage("--expect-revision must be 0 or more.") }
        let step = try control.step.map { (s) throws(SpoolError) in try Parse.text(s, option: "--step") }
        let state = try control.stateJson.map { (s) throws(SpoolError) in try Parse.json(s, option: "--state-json") }
        let transition = try transition()
        guard let spool = try existingSpoolForWriting() else { throw SpoolError.flowNotFound(control.flow.trimmingWhitespace()) }
        let id = try spool.resolveFlow(control.flow)
        let snap: FlowSnapshot
        do {
            snap = try spool.control(id, expectedRevision: control.expectRevision, transition, step: step, stateJson: state, source: "cli")
        } catch {
            if error.code == .revisionConflict, !out.json, let current = error.current {
                out.print(current.pretty())
            }
            throw error
        }
        if out.json {
            out.emit(Render.flow(snap))
            return
        }
        out.print("Flow \(snap.flow.flowId) is now \(out.status(snap.flow.status.rawValue)) (revision \(snap.flow.revision)).")
    }
}

/// `clawflow flows set-waiting`: the controller waits, or is blocked.
struct FlowsSetWaiting: ControllerCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-waiting",
        abstract: "Mark a managed flow waiting, or blocked (resumable) with --blocked-task/--blocked-summary.",
        discussion: """
            Example:
              clawflow flows set-waiting 0196f3a2-7c41-7d2e --expect-revision 3 \\
                  --wait-json '{"until":"approval"}'
            """
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var control: ControllerOptions

    @Option(name: .customLong("wait-json"), help: ArgumentHelp("What the flow waits for (any JSON).", valueName: "json"))
    var waitJson: String?

    @Option(name: .customLong("blocked-task"), help: ArgumentHelp("The linked task it is blocked on (makes it blocked).", valueName: "task-id"))
    var blockedTask: String?

    @Option(name: .customLong("blocked-summary"), help: ArgumentHelp("Why it is blocked (makes it blocked).", valueName: "text"))
    var blockedSummary: String?

    func transition() throws(SpoolError) -> ControllerTransition {
        .wait(
            waitJson: try waitJson.map { (j) throws(SpoolError) in try Parse.json(j, option: "--wait-json") },
            blockedTaskId: try blockedTask.map { (t) throws(SpoolError) in try Parse.taskId(t) },
            blockedSummary: try blockedSummary.map { (s) throws(SpoolError) in try Parse.text(s, option: "--blocked-summary") })
    }
}

/// `clawflow flows resume`: back to running.
struct FlowsResume: ControllerCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Put a waiting or blocked managed flow back to running, clearing its wait and blocked fields.",
        discussion: "Example:\n  clawflow flows resume 0196f3a2-7c41-7d2e --expect-revision 4"
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var control: ControllerOptions
    func transition() throws(SpoolError) -> ControllerTransition { .resume }
}

/// `clawflow flows finish`: succeeded.
struct FlowsFinish: ControllerCommand {
    static let configuration = CommandConfiguration(
        commandName: "finish",
        abstract: "Mark a managed flow succeeded (with endedAt).",
        discussion: "Example:\n  clawflow flows finish 0196f3a2-7c41 --expect-revision 5 --state-json null"
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var control: ControllerOptions
    func transition() throws(SpoolError) -> ControllerTransition { .finish }
}

/// `clawflow flows fail`: failed.
struct FlowsFail: ControllerCommand {
    static let configuration = CommandConfiguration(
        commandName: "fail",
        abstract: "Mark a managed flow failed (with endedAt), optionally saying why.",
        discussion: "Example:\n  clawflow flows fail 0196f3a2-7c41-7d2e --expect-revision 5 \\\n      --blocked-summary \"upstream API down\""
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var control: ControllerOptions

    @Option(name: .customLong("blocked-summary"), help: ArgumentHelp("Why it failed.", valueName: "text"))
    var blockedSummary: String?

    func transition() throws(SpoolError) -> ControllerTransition {
        .fail(blockedSummary: try blockedSummary.map { (s) throws(SpoolError) in try Parse.text(s, option: "--blocked-summary") })
    }
}

/// `clawflow flows request-cancel`: a sticky cancel request only.
struct FlowsRequestCancel: ControllerCommand {
    static let configuration = CommandConfiguration(
        commandName: "request-cancel",
        abstract: "Record a sticky cancel request on a managed flow; its controller finishes the job.",
        discussion: """
            Records the request only: the status stays as it is, even when no task is active, \
            and new task links are refused from then on. The controller then ends the flow \
            (flows finish, flows fail or flows cancel). A request still open 5 minutes later \
            with no task active is cancel_stuck for audit, and maintenance --apply cancels it.

            Example:
              clawflow flows request-cancel 0196f3a2-7c41-7d2e --expect-revision 2
            """
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var control: ControllerOptions
    func transition() throws(SpoolError) -> ControllerTransition { .requestCancel }
}
