import ArgumentParser
import ClawflowModel
import ClawflowRunner
import ClawflowSpool

/// `clawflow maintenance`: preview, or with --apply make, the repairs and retention.
struct MaintenanceCommand: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "maintenance",
        abstract: "Preview (default) or --apply the repairs and retention that keep the ledger true.",
        discussion: """
            Actions: finalise_cancel (a cancel-requested flow with no active task), end_orphaned \
            (a stale running managed flow whose tasks all ended: failed or lost per its tasks), \
            mark_lost (command tasks whose supervisor is gone; with --lost-after, external tasks \
            silent that long), fail_blocked_missing (blocked on a task that is not there), \
            fix_timestamps (a terminal flow updated after endedAt), prune (terminal flows \
            --retention after endedAt, never with an active task), sweep_temp (temp files of gone \
            writers older than --temp-age), cap_rejected (refused drops older than --rejected-age), \
            build_run_index (a spool made before the run-id index gets it). \
            Each repair re-reads the flow under its lock and leaves it alone if it changed since \
            the scan, writes through the one mutation path and is logged in events.jsonl.

            Examples:
              clawflow maintenance
              clawflow maintenance --apply --lost-after 2h
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var limits: ThresholdOptions

    @Flag(help: "Make the repairs (without it, only show them).")
    var apply = false

    @Option(
        name: .customLong("lost-after"), parsing: .unconditional,
        help: ArgumentHelp("Mark external tasks with no report for this long lost.", valueName: "duration"))
    var lostAfter: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Prune terminal flows this long after they ended.", valueName: "duration"))
    var retention = "7d"

    @Option(
        name: .customLong("temp-age"), parsing: .unconditional, help: ArgumentHelp("Sweep temp files of gone writers older than this.", valueName: "duration"))
    var tempAge = "36h"

    @Option(
        name: .customLong("rejected-age"), parsing: .unconditional,
        help: ArgumentHelp("Delete refused drops older than this from rejected/.", valueName: "duration"))
    var rejectedAge = "30d"

    func policy() throws(SpoolError) -> MaintenancePolicy {
        var p = MaintenancePolicy()
        p.thresholds = try limits.thresholds()
        p.lostAfter = try lostAfter.map { (d) throws(SpoolError) in try Parse.duration(d, option: "--lost-after") }
        p.retention = try Parse.duration(retention, option: "--retention")
        p.tempAge = try Parse.duration(tempAge, option: "--temp-age")
        p.rejectedAge = try Parse.duration(rejectedAge, option: "--rejected-age")
        return p
    }

    func execute(_ out: Output) throws(SpoolError) {
        let policy = try policy()
        var items: [MaintenanceItem] = []
        if let spool = try (apply ? existingSpoolForWriting() : readSpool()) {
            do { items = try spool.maintain(policy: policy, apply: apply) }
            // The notifications that are due, in the foreground (README.md, "Notification hooks").
            if apply { _ = Deliverer(spool: spool, source: "maintenance").drainOnce() }
        }
        let counted = apply ? items.filter(\.done) : items
        var summary: [String: Int] = [:]
        for item in counted { summary[item.action, default: 0] += 1 }
        if out.json {
            out.emit(
                .object(
                    JSONObject([
                        "applied": .bool(apply),
                        "summary": .object(JSONObject(summary.mapValues { JSON.int(Int64($0)) })),
                        "actions": .array(
                            items.map { item in
                                var o: [String: JSON] = [
                                    "action": .string(item.action), "kind": .string(item.kind), "id": .string(item.id), "reason": .string(item.reason),
                                ]
                                if apply { o["done"] = .bool(item.done) }
                                return .object(JSONObject(o))
                            }),
                    ])))
            return
        }
        if items.isEmpty {
            out.print("Nothing to do.")
            return
        }
        let skipped = items.count - counted.count
        out.print(
            apply
                ? "Applied \(counted.count) action(s)" + (skipped > 0 ? "; \(skipped) left alone (changed since the scan)." : ".")
                : "Would apply \(items.count) action(s) (run with --apply to make them):")
        out.table(
            ["ACTION", "KIND", "ID", "REASON"] + (apply ? ["DONE"] : []),
            items.map { item in
                [item.action, item.kind, Render.cell(item.id, max: 40), sanitized(item.reason)] + (apply ? [item.done ? "yes" : "no"] : [])
            })
        out.print("Summary: " + summary.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
    }
}
