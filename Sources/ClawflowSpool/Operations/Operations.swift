import ClawflowModel
import SystemPackage

extension NewTask {
    /// The task record this new task makes (a new UUIDv7 when no id was chosen).
    func record(flowId: String, ownerKey: String, at now: Timestamp) -> TaskRecord {
        var task = TaskRecord(taskId: taskId ?? Spool.newId(at: now), flowId: flowId, ownerKey: ownerKey, runtime: runtime, status: status, at: now)
        for (k, v) in fields where !v.isNull { task.fields[k] = v }
        return task
    }
}

extension Spool {
    /// Creates a one-task mirrored flow for a new task (with `flowId`, the id a drop's claim
    /// chose; else a new UUIDv7). Returns the snapshot.
    public func addTaskInNewFlow(ownerKey: String, task: NewTask, goal: String?, flowId chosenId: String? = nil, source: String) throws(SpoolError) -> (
        snapshot: FlowSnapshot, taskId: String
    ) {
        let draft = Spool.oneTaskFlow(ownerKey: ownerKey, task: task, goal: goal, flowId: chosenId, source: source)
        return (try create(flow: draft.flow, tasks: draft.tasks, source: source), draft.tasks[0].taskId)
    }

    /// The draft of a one-task mirrored flow (its goal defaults to the task's label or text).
    static func oneTaskFlow(ownerKey: String, task: NewTask, goal: String?, flowId chosenId: String?, source: String) -> FlowDraft {
        let now = Spool.now()
        let flowId = chosenId ?? Spool.newId(at: now)
        let flow = FlowRecord(
            flowId: flowId, syncMode: .taskMirrored, ownerKey: ownerKey, controllerId: nil, status: .queued,
            goal: goal ?? task[.label]?.stringValue ?? task[.task]?.stringValue, at: now)
        return FlowDraft(flow: flow, tasks: [task.record(flowId: flowId, ownerKey: ownerKey, at: now)], source: source)
    }

    /// Links a new task to an existing flow under the link rules.
    public func addTask(toFlow flowId: String, ownerKey: String?, task: NewTask, source: String) throws(SpoolError) -> (snapshot: FlowSnapshot, taskId: String)
    {
        let tx = Transaction(self)
        let added = try addTask(toFlow: flowId, ownerKey: ownerKey, task: task, source: source, in: tx)
        try tx.end()
        return added
    }

    /// `addTask(toFlow:)` inside `tx`, which the caller ends (see `change(flow:source:in:_:)`).
    func addTask(toFlow flowId: String, ownerKey: String?, task: NewTask, source: String, in tx: Transaction) throws(SpoolError) -> (
        snapshot: FlowSnapshot, taskId: String
    ) {
        let (taskId, snap) = try change(flow: flowId, source: source, in: tx) { (change) throws(SpoolError) -> String in
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
    public func createManagedFlow(ownerKey: String, goal: String, controllerId: String, running: Bool, step: String?, stateJson: JSON?, source: String)
        throws(SpoolError) -> FlowSnapshot
    {
        let now = Spool.now()
        var flow = FlowRecord(
            flowId: Spool.newId(at: now), syncMode: .managed, ownerKey: ownerKey, controllerId: controllerId, status: running ? .running : .queued, goal: goal,
            at: now)
        flow.currentStep = step
        if let stateJson { flow.stateJson = stateJson }
        return try create(flow: flow, tasks: [], source: source)
    }

    /// Reports a state change of a task. Returns the outcome (a report on a final task is
    /// ignored and logged) and the flow afterwards.
    public func updateTask(flowId: String, taskId: String, update: TaskUpdate, source: String) throws(SpoolError) -> (
        outcome: UpdateOutcome, snapshot: FlowSnapshot
    ) {
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
}

/// A controller's transition of a managed flow (spool-layout.md, "Controller commands").
public enum ControllerTransition: Sendable {
    /// `waiting`, or `blocked` (resumable, no `endedAt`) when a blocked task or summary is given.
    case wait(waitJson: JSON?, blockedTaskId: String?, blockedSummary: String?)
    /// Back to `running`, clearing the wait and blocked fields.
    case resume
    /// `succeeded`, with `endedAt`.
    case finish
    /// `failed`, with `endedAt` and an optional summary.
    case fail(blockedSummary: String?)
    /// A sticky `cancelRequestedAt` only.
    case requestCancel
}

extension Spool {
    /// A checked write by an external controller: refused unless the flow is managed
    /// (`not_managed`), still open (`already_terminal`) and at `expectedRevision`
    /// (`revision_conflict`, carrying the stored flow). `step` sets `currentStep`;
    /// `stateJson` nil keeps the controller state, `.null` clears it. Returns the flow afterwards.
    public func control(_ flowId: String, expectedRevision: Int64, _ transition: ControllerTransition, step: String?, stateJson: JSON?, source: String)
        throws(SpoolError) -> FlowSnapshot
    {
        try mutate(flow: flowId, source: source) { (change) throws(SpoolError) in
            let flow = change.flow
            guard flow.syncMode == .managed else {
                throw SpoolError(
                    .notManaged,
                    "Flow \(flowId) is mirrored: its status follows its task, so controller commands do not apply. Report the task instead (clawflow tasks set)."
                )
            }
            guard flow.revision == expectedRevision else {
                var current = flow.fields
                current["tasks"] = .array(change.orderedTasks.map { .object($0.fields) })
                throw SpoolError(
                    .revisionConflict,
                    "Flow \(flowId) is at revision \(flow.revision), not \(expectedRevision); nothing was changed. Read it again (clawflow flows show \(flowId)) and retry with --expect-revision \(flow.revision).",
                    current: .object(current))
            }
            guard !flow.isTerminal else {
                throw SpoolError(.alreadyTerminal, "Flow is already \(flow.status.rawValue).")
            }
            var next = flow
            switch transition {
            case .wait(let waitJson, let blockedTaskId, let blockedSummary):
                let blocked = blockedTaskId != nil || blockedSummary != nil
                if let id = blockedTaskId, change.tasks[id] == nil {
                    throw SpoolError(.notFound, "Task \(id) is not linked to flow \(flowId); --blocked-task names one of its tasks.")
                }
                next.status = blocked ? .blocked : .waiting
                if let waitJson { next.waitJson = waitJson }
                next.blockedTaskId = blockedTaskId
                next.blockedSummary = blockedSummary
            case .resume:
                next.status = .running
                next.waitJson = .null
                next.blockedTaskId = nil
                next.blockedSummary = nil
            case .finish:
                next.status = .succeeded
                next.endedAt = change.now
            case .fail(let summary):
                next.status = .failed
                if let summary { next.blockedSummary = summary }
                next.endedAt = change.now
            case .requestCancel:
                // The request only: the controller finishes the job (no task settling does).
                if next.cancelRequestedAt == nil {
                    next.cancelRequestedAt = change.now
                    next.isCancelRequestOnly = true
                }
            }
            if let step { next.currentStep = step }
            if let stateJson { next.stateJson = stateJson }
            change.flow = next
        }.snapshot
    }
}
