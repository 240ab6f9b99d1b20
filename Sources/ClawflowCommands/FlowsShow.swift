import ArgumentParser
import ClawflowModel
import ClawflowSpool

/// `clawflow flows show <lookup>`: one flow and its linked tasks.
struct FlowsShow: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show one flow and its linked tasks.",
        discussion: """
            The lookup is a flow id, an owner key (its newest live flow, else its newest), or a \
            unique flow-id prefix of at least 8 characters. For a sequence (run --step), the steps \
            not started yet follow its tasks. A job that waits in its queue says what for: the \
            flows it runs after (run --after) that have not succeeded yet, or a slot (--json: \
            waitingFor, {"flows": [...]} or {"queue": name}).

            Examples:
              clawflow flows show session-1
              clawflow flows show 0196f3a2-7c41 --json | jq .taskSummary
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("A flow id, owner key, or unique id prefix (8+ characters).", valueName: "lookup"))
    var lookup: String

    func execute(_ out: Output) throws(SpoolError) {
        guard let spool = try readSpool() else {
            throw SpoolError.flowNotFound(lookup.trimmingWhitespace())
        }
        let id = try spool.resolveFlow(lookup)
        let snap = try spool.flow(id)
        var waitingFor: JSON?
        var waitingText: String?
        if let queue = snap.flow.queue, LockedQueue.needsStart(snap) {
            if case .pending(let flows) = spool.dependencies(of: snap.flow) {
                waitingFor = .object(["flows": .array(flows.map(JSON.string))])
                waitingText = "flow" + (flows.count == 1 ? " " : "s ") + flows.joined(separator: ", ") + " to succeed"
            } else {
                waitingFor = .object(["queue": .string(queue)])
                waitingText = "a slot of queue \(queue)"
            }
        }
        if out.json {
            var doc = Render.flow(snap)
            if let waitingFor, case .object(var o) = doc {
                o["waitingFor"] = waitingFor
                doc = .object(o)
            }
            out.emit(doc)
        } else {
            FlowText.print(snap, waitingFor: waitingText, to: out)
        }
        for p in snap.problems { out.warn(sanitized(p.message)) }
        if let p = snap.problems.first {
            throw SpoolError(.invalidRecord, "\(snap.problems.count) task file(s) of flow \(id) could not be read; first: \(p.message)", path: p.path)
        }
    }
}

/// The text form of a flow, shared by `show` and `create`.
enum FlowText {
    /// Prints the flow; `waitingFor` says what a queued job waits for.
    static func print(_ snap: FlowSnapshot, waitingFor: String? = nil, to out: Output) {
        let f = snap.flow
        out.print(out.bold("Flow \(f.flowId)") + "  \(f.syncMode.rawValue)  " + out.status(f.status.rawValue) + "  rev \(f.revision)")
        var rows: [(String, String?)] = [
            ("Owner", sanitized(f.ownerKey)),
            ("Goal", f.goal.map(sanitized)),
            ("Controller", f.controllerId.map(sanitized)),
            ("Current step", f.currentStep.map(sanitized)),
            ("Created", f.string(.createdAt)),
            ("Updated", f.string(.updatedAt)),
            ("Ended", f.string(.endedAt)),
            ("Cancel requested", f.string(.cancelRequestedAt)),
            ("Blocked task", f.blockedTaskId),
            ("Waiting for", waitingFor),
            ("Blocked summary", f.blockedSummary.map(sanitized)),
            (
                "Retries left",
                f.retriesLeft > 0 ? String(f.retriesLeft) + (f.retryDelaySeconds > 0 ? ", each after \(DurationText.describe(f.retryDelaySeconds))" : "") : nil
            ),
        ]
        if let state = f[.stateJson], !state.isNull { rows.append(("State", sanitized(state.compact()))) }
        if let wait = f[.waitJson], !wait.isNull { rows.append(("Wait", sanitized(wait.compact()))) }
        for (label, value) in rows { if let value { out.print("  " + (label + ":").padding(18) + value) } }
        let s = TaskSummary(snap.tasks)
        out.print("")
        out.print(out.bold("Tasks") + " (\(s.active) active / \(s.total) total\(s.failures > 0 ? ", \(s.failures) failed" : ""))")
        if snap.tasks.isEmpty {
            out.print("  (none)")
        } else {
            out.table(
                ["TASK", "RUNTIME", "STATUS", "LABEL", "SUMMARY"],
                snap.tasks.map { t in
                    [
                        t.taskId, Render.cell(t.runtime, max: 16),
                        out.status(t.status.rawValue) + (t.cancelRequestedAt != nil && t.status.isActive ? "*" : ""),
                        Render.cell(t.label ?? t.task, max: 32),
                        Render.cell(t.terminalSummary ?? t.progressSummary ?? t.error, max: 40),
                    ]
                })
        }
        let pending = (f.steps ?? []).compactMap(\.objectValue).filter { $0["taskId"]?.stringValue == nil }
        if !pending.isEmpty {
            out.print("")
            out.print(out.bold("Steps not started") + " (\(pending.count))")
            out.table(
                ["STEP", "COMMAND"],
                pending.map { step in
                    [Render.cell(step["name"]?.stringValue, max: 32), Render.cell(step["command"]?.stringValue, max: 64)]
                })
        }
    }
}

extension String {
    /// The string padded with spaces to `width` characters.
    func padding(_ width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
}
