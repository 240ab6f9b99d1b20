import ArgumentParser
import ClawflowModel
import ClawflowSpool

/// Thresholds of audit and maintenance, as options.
struct ThresholdOptions: ParsableArguments {
    @Option(
        name: .customLong("stale-running"), parsing: .unconditional,
        help: ArgumentHelp("A running flow not advanced for this long is stale_running.", valueName: "duration"))
    var flowRunning = "30m"
    @Option(
        name: .customLong("stale-waiting"), parsing: .unconditional,
        help: ArgumentHelp("A waiting flow not advanced for this long is stale_waiting.", valueName: "duration"))
    var flowWaiting = "30m"
    @Option(
        name: .customLong("stale-blocked"), parsing: .unconditional,
        help: ArgumentHelp("A blocked flow without endedAt not advanced for this long is stale_blocked.", valueName: "duration"))
    var flowBlocked = "30m"
    @Option(
        name: .customLong("cancel-stuck"), parsing: .unconditional,
        help: ArgumentHelp("A cancel request not finalised this long after it was made is cancel_stuck.", valueName: "duration"))
    var cancelStuck = "5m"
    @Option(name: .customLong("stale-queued"), parsing: .unconditional, help: ArgumentHelp("A task queued this long is stale_queued.", valueName: "duration"))
    var taskQueued = "10m"
    @Option(
        name: .customLong("task-stale-running"), parsing: .unconditional,
        help: ArgumentHelp("A running task without a report for this long is stale_running.", valueName: "duration"))
    var taskRunning = "30m"

    func thresholds() throws(SpoolError) -> AuditThresholds {
        var t = AuditThresholds()
        t.flowRunning = try Parse.duration(flowRunning, option: "--stale-running")
        t.flowWaiting = try Parse.duration(flowWaiting, option: "--stale-waiting")
        t.flowBlocked = try Parse.duration(flowBlocked, option: "--stale-blocked")
        t.cancelStuck = try Parse.duration(cancelStuck, option: "--cancel-stuck")
        t.taskQueued = try Parse.duration(taskQueued, option: "--stale-queued")
        t.taskRunning = try Parse.duration(taskRunning, option: "--task-stale-running")
        return t
    }
}

/// `clawflow audit`: what is stale, stuck, missing or inconsistent in the ledger.
struct Audit: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Report stale, stuck, missing and inconsistent flows, tasks and spool files; exit 1 when there are findings.",
        discussion: """
            Flows: stale_running (error), stale_waiting, stale_blocked, cancel_stuck (error), \
            missing_linked_tasks (error), blocked_task_missing (error), inconsistent_timestamps. \
            Tasks: stale_queued, stale_running, lost, inconsistent_timestamps. Spool: \
            unparseable_record (error), stray_temp_file, bad_owner_link (error), rejected_drops. \
            Errors come first, then the oldest. The last line says what helps: clawflow \
            maintenance --apply for what it repairs, clawflow fsck for owner links and \
            unreadable records.

            Examples:
              clawflow audit
              clawflow audit --severity error --json
              clawflow audit --code stale_running --stale-running 2h
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var limits: ThresholdOptions

    @Option(help: ArgumentHelp("Only findings of this severity.", valueName: "severity"))
    var severity: Word<AuditSeverity>?

    @Option(help: ArgumentHelp("Only findings with this code.", valueName: "code"))
    var code: String?

    func execute(_ out: Output) throws(SpoolError) {
        let thresholds = try limits.thresholds()
        var wanted: AuditSeverity?
        if let severity {
            guard let s = AuditSeverity(rawValue: severity.text) else {
                throw Parse.usage("Unknown severity \"\(sanitized(severity.text))\"; use warn or error.")
            }
            wanted = s
        }
        var findings: [AuditFinding] = []
        if let spool = try readSpool() {
            findings = try spool.audit(thresholds: thresholds)
        }
        if let wanted { findings = findings.filter { $0.severity == wanted } }
        if let code { findings = findings.filter { $0.code == code } }
        let errors = findings.filter { $0.severity == .error }.count
        if out.json {
            // Each finding printed on its own, by every core (a spool of 100,000 flows can have
            // tens of thousands), into the document `emit` puts around them.
            let rendered = Spool.parallelMap(findings, minimum: 2048) { finding -> [UInt8] in
                var bytes: [UInt8] = []
                Audit.json(finding).write(into: &bytes, indent: 2, pretty: true)
                return bytes
            }
            out.emit(
                ["summary": .object(JSONObject(["errors": .int(Int64(errors)), "warnings": .int(Int64(findings.count - errors))]))],
                rendered: ["findings": rendered])
        } else if findings.isEmpty {
            out.print("No findings.")
        } else {
            out.print("\(errors) error(s), \(findings.count - errors) warning(s).")
            out.table(
                ["SEVERITY", "CODE", "KIND", "ID", "AGE", "MESSAGE"],
                findings.map { f in
                    [f.severity.rawValue, f.code, f.kind, Render.cell(f.id, max: 36), DurationText.describe(f.ageSeconds), sanitized(f.message)]
                })
        }
        if !findings.isEmpty {
            throw SpoolError(.invalidRecord, "audit found \(findings.count) finding(s)" + Audit.hints(findings).map { "; " + $0 }.joined() + ".")
        }
    }

    /// What helps with these findings, one clause per remedy: maintenance only for the codes
    /// it acts on, fsck for owner links and unreadable records; nothing for the rest (stale
    /// waiting or blocked flows, lost tasks, missing steps are for their controller or a person).
    static func hints(_ findings: [AuditFinding]) -> [String] {
        let found = Set(findings.map { "\($0.kind):\($0.code)" })
        func any(_ codes: String...) -> Bool { codes.contains { found.contains($0) } }
        var hints: [String] = []
        // finalise_cancel, fail_blocked_missing, end_orphaned, fix_timestamps, sweep_temp, cap_rejected.
        if any(
            "flow:cancel_stuck", "flow:blocked_task_missing", "flow:stale_running", "flow:inconsistent_timestamps", "spool:stray_temp_file",
            "spool:rejected_drops")
        {
            hints.append("clawflow maintenance previews the repairs, maintenance --apply makes them")
        }
        if any("task:stale_running", "task:stale_queued") {
            hints.append("maintenance --apply --lost-after DURATION marks tasks silent that long lost")
        }
        if any("spool:bad_owner_link") { hints.append("clawflow fsck --repair rebuilds owner links") }
        if any("spool:unparseable_record") { hints.append("clawflow fsck lists unreadable records; restore them from a backup or remove their flow") }
        return hints
    }

    static func json(_ f: AuditFinding) -> JSON {
        .object(
            JSONObject([
                "severity": .string(f.severity.rawValue), "code": .string(f.code), "kind": .string(f.kind), "id": .string(f.id),
                "path": .string(f.path), "message": .string(f.message), "ageSeconds": .int(f.ageSeconds),
            ]))
    }
}
