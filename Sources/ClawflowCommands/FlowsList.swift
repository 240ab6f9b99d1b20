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
        controller, tasks (active/total) and goal. A flow whose manifest cannot be read is \
        reported on stderr and the rest are still listed (exit 1).

        Examples:
          clawflow flows list
          clawflow flows list --status running --owner session-1
          clawflow flows list --json | jq '.flows[].flowId'
        """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Only flows with this status.", valueName: "status"))
    var status: String?

    @Option(help: ArgumentHelp("Only flows of this owner key.", valueName: "key"))
    var owner: String?

    func execute(_ out: Output) throws(SpoolError) {
        let wanted = try status.map { (s) throws(SpoolError) in try Parse.flowStatus(s) }
        let ownerKey = try owner.map { (o) throws(SpoolError) in try Parse.ownerKey(o) }
        var snaps: [FlowSnapshot] = []
        var failures: [SpoolError] = []
        var allIds: [String] = []
        if let spool = try readSpool() {
            allIds = try spool.flowIds()
            for result in try spool.readAllFlows() {
                switch result {
                case .success(let snap):
                    if let wanted, snap.flow.status != wanted { continue }
                    if let ownerKey, snap.flow.ownerKey != ownerKey { continue }
                    snaps.append(snap)
                    failures.append(contentsOf: snap.problems.map { SpoolError(.invalidRecord, $0.message, path: $0.path) })
                case .failure(let error):
                    failures.append(error)
                }
            }
        }
        let pressure = Pressure(snaps.map(\.flow))
        if out.json {
            var doc: [String: JSON] = [
                "count": .int(snaps.count),
                "status": pressure.json,
                "flows": .array(snaps.map(Render.flow)),
            ]
            if !failures.isEmpty {
                doc["problems"] = .array(failures.map { .object(["path": .string($0.path?.string ?? ""), "message": .string($0.message)]) })
            }
            out.emit(.object(doc))
        } else {
            out.print(summaryLine(pressure))
            if !snaps.isEmpty {
                out.table(["FLOW", "MODE", "STATUS", "REV", "CONTROLLER", "TASKS", "GOAL"], snaps.map { snap in
                    let summary = TaskSummary(snap.tasks)
                    let f = snap.flow
                    return [
                        Identifier.shortestUniquePrefix(of: f.flowId, among: allIds),
                        Render.mode(f.syncMode),
                        out.status(f.status.rawValue) + (f.cancelRequestedAt != nil && !f.isTerminal ? "*" : ""),
                        String(f.revision),
                        Render.cell(f.controllerId, max: 24),
                        "\(summary.active) active/\(summary.total) total",
                        Render.cell(f.string("goal")),
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
