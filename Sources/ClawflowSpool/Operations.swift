import ClawflowModel
import SystemPackage

/// What a new task should look like (`tasks add`, a `task` drop).
public struct NewTask: Sendable {
    /// Reporter's runtime name.
    public var runtime: String
    /// Initial status.
    public var status: TaskStatus = .queued
    /// A chosen task id (lowercase UUID), or nil for a new UUIDv7.
    public var taskId: String?
    /// Further fields (label, task, runId, ...).
    public var fields: [String: JSON] = [:]

    /// A new task of `runtime`.
    public init(runtime: String, status: TaskStatus = .queued, taskId: String? = nil, fields: [String: JSON] = [:]) {
        self.runtime = runtime
        self.status = status
        self.taskId = taskId
        self.fields = fields
    }

    func record(flowId: String, ownerKey: String, at now: Timestamp) -> TaskRecord {
        var task = TaskRecord(taskId: taskId ?? Spool.newId(at: now), flowId: flowId, ownerKey: ownerKey, runtime: runtime, status: status, at: now)
        for (k, v) in fields where !v.isNull { task.fields[k] = v }
        return task
    }
}

/// How a flow cancel ended.
public enum CancelOutcome: Sendable {
    /// The flow is `cancelled`.
    case cancelled(FlowSnapshot)
    /// The request is recorded; external tasks are still active.
    case stillActive(FlowSnapshot)
}

extension Spool {
    /// Creates a one-task mirrored flow for a new task (with `flowId`, the id a drop's claim
    /// chose; else a new UUIDv7). Returns the snapshot.
    public func addTaskInNewFlow(ownerKey: String, task: NewTask, goal: String?, flowId chosenId: String? = nil, source: String) throws(SpoolError) -> (snapshot: FlowSnapshot, taskId: String) {
        let draft = Spool.oneTaskFlow(ownerKey: ownerKey, task: task, goal: goal, flowId: chosenId, source: source)
        return (try create(flow: draft.flow, tasks: draft.tasks, source: source), draft.tasks[0].taskId)
    }

    /// The draft of a one-task mirrored flow (its goal defaults to the task's label or text).
    static func oneTaskFlow(ownerKey: String, task: NewTask, goal: String?, flowId chosenId: String?, source: String) -> FlowDraft {
        let now = Spool.now()
        let flowId = chosenId ?? Spool.newId(at: now)
        let flow = FlowRecord(flowId: flowId, syncMode: .taskMirrored, ownerKey: ownerKey, controllerId: nil, status: .queued, goal: goal ?? task.fields["label"]?.stringValue ?? task.fields["task"]?.stringValue, at: now)
        return FlowDraft(flow: flow, tasks: [task.record(flowId: flowId, ownerKey: ownerKey, at: now)], source: source)
    }

    /// Links a new task to an existing flow under the link rules.
    public func addTask(toFlow flowId: String, ownerKey: String?, task: NewTask, source: String) throws(SpoolError) -> (snapshot: FlowSnapshot, taskId: String) {
        let (taskId, snap) = try mutate(flow: flowId, source: source) { (change) throws(SpoolError) -> String in
            if let reason = Rules.linkRefusal(flow: change.flow, taskCount: change.tasks.count, ownerKey: ownerKey) {
                throw SpoolError(.linkRefused, "Cannot link the task: \(sanitized(reason)).")
            }
            let record = task.record(flowId: flowId, ownerKey: change.flow.ownerKey, at: change.now)
            if change.tasks[record.taskId] != nil {
                throw SpoolError(.linkRefused, "Task id \(record.taskId) is already used in flow \(flowId).")
            }
            change.tasks[record.taskId] = record
            return record.taskId
        }
        return (snap, taskId)
    }

    /// Creates a managed flow for an external controller.
    public func createManagedFlow(ownerKey: String, goal: String, controllerId: String, running: Bool, step: String?, stateJson: JSON?, source: String) throws(SpoolError) -> FlowSnapshot {
        let now = Spool.now()
        var flow = FlowRecord(flowId: Spool.newId(at: now), syncMode: .managed, ownerKey: ownerKey, controllerId: controllerId, status: running ? .running : .queued, goal: goal, at: now)
        flow.setString("currentStep", step)
        if let stateJson { flow.fields["stateJson"] = stateJson }
        return try create(flow: flow, tasks: [], source: source)
    }

    /// Reports a state change of a task. Returns the outcome (a report on a final task is
    /// ignored and logged) and the flow afterwards.
    public func updateTask(flowId: String, taskId: String, update: TaskUpdate, source: String) throws(SpoolError) -> (outcome: UpdateOutcome, snapshot: FlowSnapshot) {
        let (outcome, snap) = try mutate(flow: flowId, source: source) { (change) throws(SpoolError) -> UpdateOutcome in
            guard var task = change.tasks[taskId] else { throw taskNotFound(taskId) }
            let outcome = Rules.apply(update, to: &task, at: change.now)
            switch outcome {
            case .applied:
                change.tasks[taskId] = task
            case .ignored(let reason):
                var event: [String: JSON] = ["event": "ignored", "taskId": .string(taskId), "reason": .string(reason)]
                if let s = update.status { event["status"] = .string(s.rawValue) }
                change.log(event)
            }
            return outcome
        }
        return (outcome, snap)
    }

    /// The cancel protocol of spool-layout.md ("Cancel"): sticky `cancelRequestedAt`, a
    /// request in every active task's file, `cancelled` once no task is active.
    public func cancelFlow(_ flowId: String, source: String) throws(SpoolError) -> CancelOutcome {
        let (_, snap) = try mutate(flow: flowId, source: source) { (change) throws(SpoolError) in
            if change.flow.isTerminal {
                throw SpoolError(.alreadyTerminal, "Flow is already \(change.flow.status.rawValue).")
            }
            if change.flow.cancelRequestedAt == nil { change.flow.setTimestamp("cancelRequestedAt", change.now) }
            for var task in change.tasks.values where task.status.isActive && task.timestamp("cancelRequestedAt") == nil {
                task.setTimestamp("cancelRequestedAt", change.now)
                change.tasks[task.taskId] = task
            }
        }
        return snap.flow.status == .cancelled ? .cancelled(snap) : .stillActive(snap)
    }

    /// Asks an external task's runner to stop: records `cancelRequestedAt` in its file.
    /// Returns the task afterwards (still active until its runner answers).
    public func requestTaskCancel(flowId: String, taskId: String, source: String) throws(SpoolError) -> TaskRecord {
        let (task, _) = try mutate(flow: flowId, source: source) { (change) throws(SpoolError) -> TaskRecord in
            guard var task = change.tasks[taskId] else { throw taskNotFound(taskId) }
            if task.status.isTerminal { throw SpoolError(.alreadyTerminal, "Task is already \(task.status.rawValue).") }
            if task.timestamp("cancelRequestedAt") == nil {
                task.setTimestamp("cancelRequestedAt", change.now)
                change.tasks[taskId] = task
            }
            return task
        }
        return task
    }
}
