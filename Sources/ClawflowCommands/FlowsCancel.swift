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

            With --all the lookup is an owner key and every live flow of that owner is cancelled: \
            its queued jobs first (so that no slot freed by its running ones goes to them), then \
            the rest, newest first; one line each (--json: {"count", "flows"}). It exits 0 when \
            the owner has no live flow, and 1 when a task of any of them is still active.

            Examples:
              clawflow flows cancel session-1
              clawflow flows cancel batch --all
              clawflow flows cancel 0196f3a2-7c41-7d2e --json
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("A flow id, owner key, or unique id prefix (8+ characters); with --all, an owner key.", valueName: "lookup"))
    var lookup: String

    @Flag(help: "Cancel every live flow of the owner key given as lookup.")
    var all = false

    @Option(parsing: .unconditional, help: ArgumentHelp("How long a command task gets between SIGTERM and SIGKILL (e.g. 10, 30s, 1m).", valueName: "duration"))
    var grace: String = "10s"

    func execute(_ out: Output) throws(SpoolError) {
        let graceSeconds = try Parse.duration(grace, option: "--grace")
        guard let spool = try existingSpoolForWriting() else {
            throw SpoolError.flowNotFound(lookup.trimmingWhitespace())
        }
        if all {
            try cancelAll(spool, ownerKey: try Parse.ownerKey(lookup), grace: Double(graceSeconds), out)
            return
        }
        let id = try spool.resolveFlow(lookup)
        let outcome = try spool.cancel(flowId: id, grace: Double(graceSeconds), source: "cli")
        if !out.json { report(outcome, out) }
        switch outcome {
        case .cancelled(let snap):
            if out.json { out.emit(Render.flow(snap)) }
        case .stillActive(let snap):
            // With --json the error object carries the flow as `current`.
            throw SpoolError(.stillActive, "One or more child tasks are still active.", current: Render.flow(snap))
        }
    }

    /// The line a cancel prints.
    private func report(_ outcome: CancelOutcome, _ out: Output) {
        switch outcome {
        case .cancelled(let snap):
            out.print("Cancelled \(snap.flow.flowId) (\(snap.flow.syncMode.rawValue)) with status \(out.status(snap.flow.status.rawValue)).")
        case .stillActive(let snap):
            let active = snap.tasks.filter { $0.status.isActive }.map(\.taskId)
            out.print(
                "Cancel requested for \(snap.flow.flowId) (\(snap.flow.syncMode.rawValue)); waiting for \(active.count) active task(s): \(active.joined(separator: ", "))."
            )
        }
    }

    /// `--all`: every live flow of `ownerKey`, queued ones first; a flow that ended meanwhile is skipped.
    private func cancelAll(_ spool: Spool, ownerKey: String, grace: Double, _ out: Output) throws(SpoolError) {
        let live = try spool.flows { result -> FlowRecord? in
            guard case .success(let snap) = result, snap.flow.ownerKey == ownerKey, !snap.flow.isTerminal else { return nil }
            return snap.flow
        }.compactMap { $0 }
        let order = live.filter { $0.status == .queued } + live.filter { $0.status != .queued }
        var outcomes: [CancelOutcome] = []
        for flow in order {
            do {
                outcomes.append(try spool.cancel(flowId: flow.flowId, grace: grace, source: "cli"))
            } catch  where error.code == .alreadyTerminal {
                continue
            }
        }
        let stillActive = outcomes.filter { if case .stillActive = $0 { true } else { false } }.count
        if out.json {
            out.emit(.object(JSONObject(["count": .int(Int64(outcomes.count)), "flows": .array(outcomes.map { Render.flow($0.snapshot) })])))
        } else if outcomes.isEmpty {
            out.print("No live flow of owner \(sanitized(ownerKey)) to cancel.")
        } else {
            for outcome in outcomes { report(outcome, out) }
        }
        if stillActive > 0 {
            throw SpoolError(.stillActive, "One or more child tasks of \(stillActive) flow(s) are still active.")
        }
    }
}
