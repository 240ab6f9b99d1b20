/// What maintenance may do to one flow (spool-layout.md, "Audit and maintenance"). Pure: the spool
/// re-checks each action under the flow lock with `still(_:)` before it writes.
public enum MaintenanceAction: Sendable, Equatable {
    /// A cancel-requested flow with no active task becomes `cancelled`.
    case finaliseCancel
    /// A stale running managed flow whose tasks all ended: `failed` or `lost` per its tasks.
    case endOrphaned(FlowStatus, summary: String)
    /// External tasks silent for `--lost-after` become `lost`.
    case markSilentLost([String])
    /// A flow blocked on a task that is not linked to it fails.
    case failBlockedMissing(summary: String)
    /// A terminal flow with `updatedAt` after `endedAt`: `endedAt` moves to this write.
    case fixTimestamps
    /// A terminal flow 7 days after `endedAt`, with no active task: deleted.
    case prune

    /// The action's name in output and events.
    public var name: String {
        switch self {
        case .finaliseCancel: "finalise_cancel"
        case .endOrphaned: "end_orphaned"
        case .markSilentLost: "mark_lost"
        case .failBlockedMissing: "fail_blocked_missing"
        case .fixTimestamps: "fix_timestamps"
        case .prune: "prune"
        }
    }
}

/// The settings of one maintenance pass.
public struct MaintenancePolicy: Sendable {
    /// Staleness thresholds (a running managed flow is orphaned only once stale).
    public var thresholds = AuditThresholds()
    /// External active tasks silent this long become lost (nil: never).
    public var lostAfter: Int64?
    /// Terminal flows are pruned this long after `endedAt` (7 days).
    public var retention: Int64 = 7 * 86_400
    /// Temp files and staging directories of gone writers are swept after this long (36 h).
    public var tempAge: Int64 = 36 * 3600
    /// Refused drops are deleted from rejected/ after this long (30 days).
    public var rejectedAge: Int64 = 30 * 86_400

    /// The defaults.
    public init() {}
}

/// Which maintenance actions a flow needs, as of `now`.
public enum MaintenanceRules {
    /// The actions for one flow, each with the reason shown to people; at most one that
    /// changes the status, then pruning.
    public static func plan(flow: FlowRecord, tasks: [TaskRecord], now: Timestamp, policy: MaintenancePolicy) -> [(action: MaintenanceAction, reason: String)] {
        func age(_ ts: Timestamp?) -> Int64 { ts.map { (now.milliseconds - $0.milliseconds) / 1000 } ?? 0 }
        let active = tasks.filter { $0.status.isActive }
        if flow.isTerminal {
            // Pruning first: fixing the timestamps would restart a flow's retention.
            if let ended = flow.endedAt, active.isEmpty, age(ended) >= policy.retention {
                return [(.prune, "ended \(DurationText.describe(age(ended))) ago (retention \(DurationText.describe(policy.retention)))")]
            }
            if let ended = flow.endedAt, let updated = flow.updatedAt, updated > ended {
                return [(.fixTimestamps, "updatedAt \(updated) is after endedAt \(ended)")]
            }
            return []
        }
        // A controller's own request is left to it until the request is cancel_stuck.
        if flow.cancelRequestedAt != nil, active.isEmpty, !flow.isCancelRequestOnly || age(flow.cancelRequestedAt) >= policy.thresholds.cancelStuck {
            let whose = flow.isCancelRequestOnly ? "its controller's cancel request" : "cancel requested"
            return [(.finaliseCancel, "\(whose) \(DurationText.describe(age(flow.cancelRequestedAt))) ago and no task is active")]
        }
        if let blocked = flow.blockedTaskId, !tasks.contains(where: { $0.taskId == blocked }) {
            return [
                (
                    .failBlockedMissing(summary: "blocked on task \(blocked), which is not linked to the flow (maintenance)"),
                    "blockedTaskId \(blocked) is missing"
                )
            ]
        }
        if let lostAfter = policy.lostAfter {
            let silent = active.filter { !$0.isCommand && silence(of: $0, now: now) >= lostAfter }
            if !silent.isEmpty {
                let each = silent.map { "task \($0.taskId) silent for \(DurationText.describe(silence(of: $0, now: now)))" }
                return [(.markSilentLost(silent.map(\.taskId)), each.joined(separator: ", ") + " (--lost-after \(DurationText.describe(lostAfter)))")]
            }
        }
        let sinceUpdate = age(flow.updatedAt ?? flow.createdAt)
        if flow.syncMode == .managed, flow.status == .running, sinceUpdate >= policy.thresholds.flowRunning, !tasks.isEmpty, active.isEmpty {
            if let failed = tasks.first(where: { $0.status == .failed || $0.status == .timedOut }) {
                return [
                    (
                        .endOrphaned(
                            .failed,
                            summary:
                                "no controller advanced it for \(DurationText.describe(sinceUpdate)); task \(failed.taskId) \(Rules.endText(of: failed)) (maintenance)"
                        ), "stale running, every task ended, one failed"
                    )
                ]
            }
            if tasks.contains(where: { $0.status == .lost }) {
                return [
                    (
                        .endOrphaned(.lost, summary: "no controller advanced it for \(DurationText.describe(sinceUpdate)); its tasks were lost (maintenance)"),
                        "stale running, every task ended, tasks lost"
                    )
                ]
            }
        }
        return []
    }

    /// Seconds since `task` last reported (its last event, else its start, else its creation).
    public static func silence(of task: TaskRecord, now: Timestamp) -> Int64 {
        let last = task.lastEventAt ?? task.startedAt ?? task.createdAt
        return (now.milliseconds - last.milliseconds) / 1000
    }

    /// Whether `action` still applies to the flow as re-read under its lock.
    public static func still(_ action: MaintenanceAction, flow: FlowRecord, tasks: [TaskRecord], now: Timestamp, policy: MaintenancePolicy) -> Bool {
        plan(flow: flow, tasks: tasks, now: now, policy: policy).contains { $0.action == action }
    }

    /// Applies a status-changing action to the records (the spool writes them).
    public static func apply(_ action: MaintenanceAction, flow: inout FlowRecord, tasks: inout [String: TaskRecord], now: Timestamp, policy: MaintenancePolicy)
    {
        switch action {
        case .finaliseCancel:
            flow.isCancelRequestOnly = false  // reconcile then finalises the cancel
        case .prune:
            break  // pruning deletes
        case .endOrphaned(let status, let summary):
            flow.status = status
            flow.blockedSummary = summary
            flow.endedAt = now
        case .markSilentLost(let ids):
            for id in ids {
                guard var task = tasks[id] else { continue }
                let threshold = policy.lostAfter.map { " \(DurationText.describe($0))" } ?? ""
                let silent = DurationText.describe(silence(of: task, now: now))
                _ = Rules.apply(
                    TaskUpdate(status: .lost, [.error: .string("no report for \(silent) (maintenance --lost-after\(threshold))")]), to: &task, at: now)
                tasks[id] = task
            }
        case .failBlockedMissing(let summary):
            flow.status = .failed
            flow.blockedTaskId = nil
            flow.blockedSummary = summary
            flow.endedAt = now
        case .fixTimestamps:
            flow.endedAt = now
        }
    }
}
