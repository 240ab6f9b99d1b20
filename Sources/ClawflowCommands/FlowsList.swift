import ArgumentParser
import ClawflowModel
import ClawflowSpool

/// `clawflow flows list`: every flow, newest first, with the pressure summary.
struct FlowsList: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List flows, newest first, with a summary of the work in flight.",
        discussion: """
            The table shows each flow's id (shortest unique prefix), mode, status, revision, \
            controller, owner key, queue, tasks (active/total), duration (from its first task's \
            start to its end, or until now), the exit status of a command job's newest command \
            task (its exit code, or the signal that ended it) and goal. --limit N lists only the \
            newest N flows; the summary line still counts every flow that matches. A flow whose \
            manifest cannot be read is reported on stderr and the rest are still listed (exit 1).

            Examples:
              clawflow flows list
              clawflow flows list --status running --owner session-1
              clawflow flows list --limit 10
              clawflow flows list --json | jq '.flows[].flowId'
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Only flows with this status.", valueName: "status"))
    var status: Word<FlowStatus>?

    @Option(help: ArgumentHelp("Only flows of this owner key.", valueName: "key"))
    var owner: String?

    @Option(help: ArgumentHelp("Only the newest N flows (N at least 1).", valueName: "N"))
    var limit: Int?

    /// One flow as the listing needs it, worked out on the reading thread. With --json only
    /// its rendering and what the status summary counts are kept, so the records are freed
    /// on the reading threads, not one after another at the end.
    private struct Listed: Sendable {
        /// The record, for the table (nil with --json).
        var flow: FlowRecord?
        /// What the status summary counts; nil when the flow is not listed.
        var counted: Pressure.Counted?
        var summary: TaskSummary?
        /// When its first task started, if one did.
        var started: Timestamp?
        /// The outcome of its newest command task: exit code or signal name.
        var exit: String?
        var json: [UInt8] = []
        var failures: [SpoolError] = []
    }

    func execute(_ out: Output) throws(SpoolError) {
        let wanted = try status.map { (s) throws(SpoolError) in try Parse.flowStatus(s.text) }
        let ownerKey = try owner.map { (o) throws(SpoolError) in try Parse.ownerKey(o) }
        if let limit, limit < 1 { throw Parse.usage("--limit must be at least 1, not \(limit).") }
        var listed: [Listed] = []
        var allIds: [String] = []
        let json = out.json
        if let spool = try readSpool() {
            allIds = try spool.flowIds()
            listed = try spool.flows(ids: allIds) { result in
                switch result {
                case .success(let snap):
                    if let wanted, snap.flow.status != wanted { return Listed() }
                    if let ownerKey, snap.flow.ownerKey != ownerKey { return Listed() }
                    var item = Listed(flow: json ? nil : snap.flow, counted: Pressure.Counted(snap.flow))
                    if json {
                        item.json.reserveCapacity(4096)  // a flow with a few tasks, without growing
                        Render.writeFlow(snap, into: &item.json, indent: 2)
                    } else {
                        // What only the table shows.
                        item.summary = TaskSummary(snap.tasks)
                        item.started = snap.tasks.compactMap(\.startedAt).min()
                        if let command = snap.tasks.last(where: \.isCommand), command.status.isTerminal {
                            item.exit = command.exitCode.map { String($0) } ?? command.signal.map(sanitized)
                        }
                    }
                    item.failures = snap.problems.map { SpoolError(.invalidRecord, $0.message, path: $0.path) }
                    return item
                case .failure(let error):
                    return Listed(failures: [error])
                }
            }
        }
        let matching = listed.filter { $0.counted != nil }
        let failures = listed.flatMap(\.failures)
        let pressure = Pressure(counting: matching.map { $0.counted! })
        let shown = limit.map { Array(matching.prefix($0)) } ?? matching
        let now = Spool.now()
        if out.json {
            var doc: [String: JSON] = ["count": .int(shown.count), "status": pressure.json]
            if !failures.isEmpty {
                doc["problems"] = .array(failures.map { .object(["path": .string($0.path?.string ?? ""), "message": .string($0.message)]) })
            }
            out.emit(doc, rendered: ["flows": shown.map(\.json)])
        } else {
            out.print(summaryLine(pressure))
            if !shown.isEmpty {
                out.table(
                    ["FLOW", "MODE", "STATUS", "REV", "CONTROLLER", "OWNER", "QUEUE", "TASKS", "DURATION", "EXIT", "GOAL"],
                    shown.map { item in
                        let f = item.flow!
                        let summary = item.summary!
                        return [
                            Identifier.shortestUniquePrefix(of: f.flowId, among: allIds),
                            Render.mode(f.syncMode),
                            out.status(f.status.rawValue) + (f.cancelRequestedAt != nil && !f.isTerminal ? "*" : ""),
                            String(f.revision),
                            Render.cell(f.controllerId, max: 24),
                            Render.cell(f.ownerKey, max: 24),
                            Render.cell(f.queue, max: 16),
                            "\(summary.active) active/\(summary.total) total",
                            item.started.map { DurationText.describe((f.isTerminal ? f.endedAt ?? now : now).seconds(since: $0)) } ?? "-",
                            item.exit ?? "-",
                            Render.cell(f.goal),
                        ]
                    })
            }
        }
        for failure in failures { out.warn(sanitized(failure.message)) }
        if !failures.isEmpty {
            throw SpoolError(.invalidRecord, "\(failures.count) record(s) could not be read; see the messages above. clawflow fsck lists every problem.")
        }
    }

    private func summaryLine(_ p: Pressure) -> String {
        let live = ["queued", "running", "waiting", "blocked"].compactMap { name -> String? in
            let n = p.liveByStatus[FlowStatus(rawValue: name)!] ?? 0
            return n > 0 ? "\(n) \(name)" : nil
        }
        var line = "\(p.total) flow\(p.total == 1 ? "" : "s"): \(p.active) active"
        if !live.isEmpty { line += " (" + live.joined(separator: ", ") + ")" }
        if p.cancelRequested > 0 { line += ", \(p.cancelRequested) cancel requested (*)" }
        line += ", \(p.terminal) finished"
        return line
    }
}
