import ClawflowModel

/// How a cancel ended.
public enum CancelOutcome: Sendable {
    /// What was cancelled has ended: the flow is `cancelled`, or the task is final.
    case cancelled(FlowSnapshot)
    /// The request is recorded; external tasks (or the one task) are still active, and their
    /// runners have been asked to stop.
    case stillActive(FlowSnapshot)

    /// The flow afterwards.
    public var snapshot: FlowSnapshot {
        switch self {
        case .cancelled(let snap), .stillActive(let snap): snap
        }
    }
}

/// The cancel protocol (spool-layout.md, "States and transitions"), one entry point for
/// `flows cancel` and `tasks cancel`: the request is recorded (a sticky `cancelRequestedAt`;
/// an external task's runner sees it in its task file or cancel marker), then every command
/// clawflow runs among the targets is stopped and recorded `cancelled`.
extension Spool {
    /// Cancels a whole flow, or with `taskId` one task of it. Command tasks get SIGTERM to
    /// their process group, SIGKILL after `grace` seconds, and are waited for until no
    /// process of the group is left. A terminal flow or task is refused (`already_terminal`).
    public func cancel(flowId: String, taskId: String? = nil, grace: Double, source: String) throws(SpoolError) -> CancelOutcome {
        var snap: FlowSnapshot
        if let taskId {
            snap = try requestTaskCancel(flowId: flowId, taskId: taskId, source: source)
        } else {
            snap = try requestFlowCancel(flowId, source: source)
        }
        let commands = Set(snap.tasks.filter { $0.isCommand && $0.status.isActive && (taskId == nil || $0.taskId == taskId) }.map(\.taskId))
        if !commands.isEmpty { snap = try stopCommands(flowId: flowId, only: commands, grace: grace) }
        let ended = taskId.map { id in snap.tasks.first { $0.taskId == id }?.status.isTerminal ?? true } ?? (snap.flow.status == .cancelled)
        return ended ? .cancelled(snap) : .stillActive(snap)
    }

    /// Records a flow's cancel request: sticky `cancelRequestedAt` on the flow and on every
    /// active task; the flow is `cancelled` in the same write when no task is active.
    func requestFlowCancel(_ flowId: String, source: String) throws(SpoolError) -> FlowSnapshot {
        try mutate(flow: flowId, source: source) { (change) throws(SpoolError) in
            if change.flow.isTerminal {
                throw SpoolError(.alreadyTerminal, "Flow is already \(change.flow.status.rawValue).")
            }
            if change.flow.cancelRequestedAt == nil { change.flow.cancelRequestedAt = change.now }
            change.flow.isCancelRequestOnly = false  // this cancel finishes the flow itself
            for var task in change.tasks.values where task.status.isActive && task.cancelRequestedAt == nil {
                task.cancelRequestedAt = change.now
                change.tasks[task.taskId] = task
            }
        }.snapshot
    }

    /// Records one task's cancel request (`cancelRequestedAt` in its file). Returns the flow
    /// afterwards (the task still active until it is stopped or its runner answers).
    func requestTaskCancel(flowId: String, taskId: String, source: String) throws(SpoolError) -> FlowSnapshot {
        try mutate(flow: flowId, source: source) { (change) throws(SpoolError) in
            guard var task = change.tasks[taskId] else { throw taskNotFound(taskId) }
            if task.status.isTerminal { throw SpoolError(.alreadyTerminal, "Task is already \(task.status.rawValue).") }
            if task.cancelRequestedAt == nil {
                task.cancelRequestedAt = change.now
                change.tasks[taskId] = task
            }
        }.snapshot
    }

    /// Stops the flow's active command tasks in `only`: SIGTERM to each process group,
    /// SIGKILL after `grace` seconds, and waits until no process of the group is left; then
    /// records each `cancelled` (the flow then finalises by the rules). Called after the
    /// cancel request is recorded, so the supervisor records `cancelled` too.
    func stopCommands(flowId: String, only: Set<String>, grace: Double) throws(SpoolError) -> FlowSnapshot {
        let snap = try readFlow(flowId)
        let targets = snap.tasks.filter { $0.isCommand && $0.status.isActive && only.contains($0.taskId) }
        guard !targets.isEmpty else { return snap }
        for task in targets { Spool.endCommand(of: task, grace: grace) }
        let ids = Set(targets.map(\.taskId))
        return try mutate(flow: flowId, source: "runner") { (change) throws(SpoolError) in
            for var task in change.tasks.values where ids.contains(task.taskId) && task.status.isActive {
                _ = Rules.apply(TaskUpdate(status: .cancelled), to: &task, at: change.now)
                change.tasks[task.taskId] = task
            }
        }.snapshot
    }
}
