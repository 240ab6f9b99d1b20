import ArgumentParser
import ClawflowModel
import ClawflowSpool

/// `clawflow flows cancel <lookup>`: the cancel protocol for a whole job.
struct FlowsCancel: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Cancel a flow and every active task in it.",
        discussion: """
        Records a sticky cancelRequestedAt on the flow and asks every active task to stop \
        (an external task sees cancelRequestedAt in its task file; a command started with \
        clawflow run gets SIGTERM to its process group, SIGKILL after --grace, and the command \
        waits until no process of the group is left). When no task is active \
        the flow becomes cancelled and the command exits 0. While an external task is still \
        active it exits 1 with "One or more child tasks are still active."; the flow is \
        finalised as soon as the last task settles.

        Examples:
          clawflow flows cancel session-1
          clawflow flows cancel 0196f3a2-7c41-7d2e --json
        """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("A flow id, owner key, or unique id prefix (8+ characters).", valueName: "lookup"))
    var lookup: String

    @Option(parsing: .unconditional, help: ArgumentHelp("How long a command task gets between SIGTERM and SIGKILL (e.g. 10, 30s, 1m).", valueName: "duration"))
    var grace: String = "10s"

    func execute(_ out: Output) throws(SpoolError) {
        let graceSeconds = try Parse.duration(grace, option: "--grace")
        guard let spool = try existingSpoolForWriting() else {
            throw SpoolError.flowNotFound(lookup.trimmingWhitespace())
        }
        let id = try spool.resolveFlow(lookup)
        switch try spool.cancel(flowId: id, grace: Double(graceSeconds), source: "cli") {
        case .cancelled(let snap):
            if out.json { out.emit(Render.flow(snap)) } else {
                out.print("Cancelled \(snap.flow.flowId) (\(snap.flow.syncMode.rawValue)) with status \(out.status(snap.flow.status.rawValue)).")
            }
        case .stillActive(let snap):
            let active = snap.tasks.filter { $0.status.isActive }.map(\.taskId)
            if !out.json {
                out.print("Cancel requested for \(snap.flow.flowId) (\(snap.flow.syncMode.rawValue)); waiting for \(active.count) active task(s): \(active.joined(separator: ", ")).")
            }
            throw SpoolError(.stillActive, "One or more child tasks are still active.", current: Render.flow(snap))
        }
    }
}
