/// How serious an audit finding is.
public enum AuditSeverity: String, Sendable, CaseIterable, Comparable {
    /// Something is wrong and needs a repair.
    case error
    /// Something looks wrong or old; worth a look.
    case warn

    /// Errors sort before warnings.
    public static func < (a: AuditSeverity, b: AuditSeverity) -> Bool { a == .error && b == .warn }
}

/// One audit finding (spec §6.1, `audit --json`).
public struct AuditFinding: Sendable, Equatable {
    /// `error` or `warn`.
    public var severity: AuditSeverity
    /// A stable code such as `stale_running`.
    public var code: String
    /// `flow`, `task` or `spool`.
    public var kind: String
    /// The flow or task id, or a file name for spool findings.
    public var id: String
    /// The file the finding is about.
    public var path: String
    /// A sentence saying what is wrong.
    public var message: String
    /// How long the condition has held (or the age of the thing), in seconds.
    public var ageSeconds: Int64

    /// A finding.
    public init(_ severity: AuditSeverity, _ code: String, kind: String, id: String, path: String, message: String, ageSeconds: Int64) {
        self.severity = severity
        self.code = code
        self.kind = kind
        self.id = id
        self.path = path
        self.message = message
        self.ageSeconds = max(0, ageSeconds)
    }

    /// Errors first, then the oldest first, then by code and id.
    public static func sorted(_ findings: [AuditFinding]) -> [AuditFinding] {
        // Sorts positions, not findings: moving a finding (seven fields, four strings) costs
        // retains and releases, and an audit of a large spool sorts tens of thousands.
        let keys = findings.map { ($0.severity, $0.ageSeconds) }
        let order = findings.indices.sorted { a, b in
            if keys[a].0 != keys[b].0 { return keys[a].0 < keys[b].0 }
            if keys[a].1 != keys[b].1 { return keys[a].1 > keys[b].1 }
            return (findings[a].code, findings[a].id) < (findings[b].code, findings[b].id)
        }
        return order.map { findings[$0] }
    }
}

/// The ages at which audit (and maintenance) call something stale, in seconds.
public struct AuditThresholds: Sendable, Equatable {
    /// A running flow that has not advanced (`updatedAt`) for this long: `stale_running` (30 min).
    public var flowRunning: Int64 = 1800
    /// A waiting flow not advanced for this long: `stale_waiting` (30 min).
    public var flowWaiting: Int64 = 1800
    /// A blocked flow without `endedAt` not advanced for this long: `stale_blocked` (30 min).
    public var flowBlocked: Int64 = 1800
    /// A cancel request with no active task, not finalised after this long: `cancel_stuck` (5 min).
    public var cancelStuck: Int64 = 300
    /// A task queued this long: `stale_queued` (10 min).
    public var taskQueued: Int64 = 600
    /// A task running without a report for this long: `stale_running` (30 min).
    public var taskRunning: Int64 = 1800
    /// A notification not delivered this long after its transition: `notify_pending` (5 min).
    public var notifyPending: Int64 = 300

    /// The defaults.
    public init() {}
}

/// The audit rules over one flow and its tasks: pure, no I/O.
public enum AuditRules {
    /// Findings about `flow` and `tasks` at `now`. `isLive` says whether an active command
    /// task's supervisor still runs (such a task is not stale however long it runs);
    /// `manifest` is the path of the flow's manifest, `taskPath` that of a task's file; both
    /// are made only for a finding (most flows have none, and a path costs more to build than
    /// the rules to check).
    public static func findings(
        flow: FlowRecord, tasks: [TaskRecord], now: Timestamp, thresholds t: AuditThresholds, manifest: @autoclosure () -> String,
        taskPath: (String) -> String,
        isLive: (TaskRecord) -> Bool = { _ in false }
    ) -> [AuditFinding] {
        var out: [AuditFinding] = []
        let id = flow.flowId
        func age(_ ts: Timestamp?) -> Int64 { ts.map { (now.milliseconds - $0.milliseconds) / 1000 } ?? 0 }
        let updated = flow.updatedAt ?? flow.createdAt
        let sinceUpdate = age(updated)
        let active = tasks.contains { $0.status.isActive }
        func flowFinding(_ severity: AuditSeverity, _ code: String, _ message: String, _ ageSeconds: Int64) {
            out.append(AuditFinding(severity, code, kind: "flow", id: id, path: manifest(), message: message, ageSeconds: ageSeconds))
        }

        if !flow.isTerminal {
            switch flow.status {
            case .running where sinceUpdate >= t.flowRunning:
                flowFinding(.error, "stale_running", "flow \(id) says running but has not advanced for \(DurationText.describe(sinceUpdate))", sinceUpdate)
            case .waiting where sinceUpdate >= t.flowWaiting:
                flowFinding(.warn, "stale_waiting", "flow \(id) has been waiting for \(DurationText.describe(sinceUpdate))", sinceUpdate)
            case .blocked where sinceUpdate >= t.flowBlocked:
                flowFinding(.warn, "stale_blocked", "flow \(id) has been blocked for \(DurationText.describe(sinceUpdate)) without ending", sinceUpdate)
            default: break
            }
            if let requested = flow.cancelRequestedAt, !active, age(requested) >= t.cancelStuck {
                flowFinding(
                    .error, "cancel_stuck",
                    "flow \(id) had a cancel request \(DurationText.describe(age(requested))) ago, has no active task, and is still \(flow.status.rawValue)",
                    age(requested))
            }
        }
        // The task ids are gathered only for a flow that names some (most name none).
        let stepIds = (flow.steps ?? []).compactMap { $0.objectValue?["taskId"]?.stringValue }
        let blockedTaskId = flow.blockedTaskId
        if !stepIds.isEmpty || blockedTaskId != nil {
            let byId = Set(tasks.map(\.taskId))
            let missingSteps = stepIds.filter { !byId.contains($0) }
            if !missingSteps.isEmpty {
                flowFinding(
                    .error, "missing_linked_tasks", "flow \(id) names step task(s) \(missingSteps.joined(separator: ", ")) that are not in its tasks/",
                    sinceUpdate)
            }
            if let blocked = blockedTaskId, !byId.contains(blocked) {
                flowFinding(.error, "blocked_task_missing", "flow \(id) is blocked on task \(blocked), which is not linked to it", sinceUpdate)
            }
        }
        if let problem = timestampProblem(
            created: flow.createdAt, started: nil, updated: updated, ended: flow.endedAt, terminal: flow.isTerminal, updatedAfterEndIsWrong: true)
        {
            flowFinding(.warn, "inconsistent_timestamps", "flow \(id): \(problem)", sinceUpdate)
        }

        for task in tasks {
            func taskFinding(_ severity: AuditSeverity, _ code: String, _ message: String, _ ageSeconds: Int64) {
                out.append(AuditFinding(severity, code, kind: "task", id: task.taskId, path: taskPath(task.taskId), message: message, ageSeconds: ageSeconds))
            }
            let lastReport = task.lastEventAt ?? task.startedAt ?? task.createdAt
            switch task.status {
            case .queued where age(task.createdAt) >= t.taskQueued:
                taskFinding(.warn, "stale_queued", "task \(task.taskId) has been queued for \(DurationText.describe(age(task.createdAt)))", age(task.createdAt))
            case .running where age(lastReport) >= t.taskRunning && !isLive(task):
                taskFinding(
                    .warn, "stale_running",
                    "task \(task.taskId) (\(task.runtime)) has been running without a report for \(DurationText.describe(age(lastReport)))", age(lastReport))
            case .lost:
                taskFinding(.warn, "lost", "task \(task.taskId) (\(task.runtime)) was lost: \(task.error ?? "its process vanished")", age(task.endedAt))
            default: break
            }
            if let problem = timestampProblem(
                created: task.createdAt, started: task.startedAt, updated: nil, ended: task.endedAt, terminal: task.status.isTerminal,
                updatedAfterEndIsWrong: false)
            {
                taskFinding(.warn, "inconsistent_timestamps", "task \(task.taskId): \(problem)", age(lastReport))
            }
        }
        return out
    }

    /// What contradicts itself among a record's timestamps, or nil.
    static func timestampProblem(created: Timestamp, started: Timestamp?, updated: Timestamp?, ended: Timestamp?, terminal: Bool, updatedAfterEndIsWrong: Bool)
        -> String?
    {
        if let started, started < created { return "startedAt \(started) is before createdAt \(created)" }
        if let updated, updated < created { return "updatedAt \(updated) is before createdAt \(created)" }
        if let ended, ended < created { return "endedAt \(ended) is before createdAt \(created)" }
        if let ended, let started, ended < started { return "endedAt \(ended) is before startedAt \(started)" }
        if let ended, !terminal { return "it is not terminal but has endedAt \(ended)" }
        if terminal, ended == nil { return "it is terminal but has no endedAt" }
        if updatedAfterEndIsWrong, let ended, let updated, updated > ended { return "updatedAt \(updated) is after endedAt \(ended)" }
        return nil
    }
}
