/// A state change reported for a task (`tasks set`, a `task-update` drop, the runner).
public struct TaskUpdate: Sendable, Equatable {
    /// The new status, if the status changes.
    public var status: TaskStatus?
    /// Other fields to set (`progressSummary`, `terminalSummary`, `error`, `exitCode`, ...).
    public var fields: [String: JSON]

    /// An update of `status` and any other fields.
    public init(status: TaskStatus? = nil, fields: [String: JSON] = [:]) {
        self.status = status
        self.fields = fields
    }

    /// An update of `status` and known fields.
    public init(status: TaskStatus? = nil, _ known: [RecordKey: JSON]) {
        self.init(status: status, fields: Dictionary(uniqueKeysWithValues: known.map { ($0.key.rawValue, $0.value) }))
    }

    /// The value of a known field; setting nil removes it.
    public subscript(_ key: RecordKey) -> JSON? {
        get { fields[key.rawValue] }
        set { fields[key.rawValue] = newValue }
    }
}

/// What became of a reported task update.
public enum UpdateOutcome: Sendable, Equatable {
    /// The update was applied.
    case applied
    /// The task is already final; the report was ignored (and is logged).
    case ignored(reason: String)
}

/// The rules of spec §3 as pure functions over records.
public enum Rules {
    /// Applies `update` to `task` under the precedence rule.
    public static func apply(_ update: TaskUpdate, to task: inout TaskRecord, at now: Timestamp) -> UpdateOutcome {
        let current = task.status
        if let next = update.status, current.isTerminal {
            if next == current || !current.allows(next) {
                return .ignored(reason: "task is already \(current.rawValue); \(next.rawValue) was not applied")
            }
        } else if update.status == nil, current.isTerminal, !update.fields.isEmpty {
            return .ignored(reason: "task is already \(current.rawValue); the report was not applied")
        }
        for (key, value) in update.fields { task.fields[key] = value.isNull ? nil : value }
        if let next = update.status {
            task.status = next
            if next == .running, task.startedAt == nil { task.startedAt = now }
            if next.isTerminal { task.endedAt = now }
            if next.isActive { task.endedAt = nil }
        }
        task.lastEventAt = now
        return .applied
    }

    /// Why a new task may not be linked to `flow`, or nil when it may.
    public static func linkRefusal(flow: FlowRecord, taskCount: Int, ownerKey: String?) -> String? {
        if flow.isTerminal { return "flow \(flow.flowId) is already \(flow.status.rawValue)" }
        if flow.cancelRequestedAt != nil { return "flow \(flow.flowId) has a cancel request" }
        if flow.syncMode == .taskMirrored, taskCount > 0 { return "flow \(flow.flowId) is mirrored and already has its one task" }
        if let key = ownerKey, key != flow.ownerKey {
            return "owner key \"\(key)\" differs from the flow's owner \"\(flow.ownerKey)\""
        }
        return nil
    }

    /// The status a mirrored flow takes from its task.
    public static func mirroredStatus(of task: TaskRecord) -> FlowStatus {
        switch task.status {
        case .queued: .queued
        case .running: .running
        case .succeeded: task.isBlockedOutcome ? .blocked : .succeeded
        case .failed, .timedOut: .failed
        case .cancelled: .cancelled
        case .lost: .lost
        }
    }

    /// Reconciles a flow with its tasks: mirrored derivation and cancel finalisation.
    /// Returns the flow record as it should be stored (revision and `updatedAt` untouched).
    public static func reconcile(_ flow: FlowRecord, tasks: [TaskRecord], at now: Timestamp) -> FlowRecord {
        var next = flow
        if flow.isTerminal {
            // Terminal is final, except that a mirrored flow that succeeded follows its task
            // when that later fails, times out or is cancelled (precedence, spool-layout.md).
            guard flow.syncMode == .taskMirrored, flow.status == .succeeded || flow.status == .blocked,
                flow.cancelRequestedAt == nil,
                let task = tasks.max(by: { $0.createdAt < $1.createdAt }),
                [.failed, .timedOut, .cancelled].contains(task.status)
            else { return next }
            next.status = mirroredStatus(of: task)
            next.blockedTaskId = nil
            next.blockedSummary = nil
            next.endedAt = task.endedAt ?? now
            return next
        }
        let active = tasks.contains { $0.status.isActive }
        // A controller's own request (`request-cancel`) is the controller's to finish.
        if flow.cancelRequestedAt != nil, !flow.isCancelRequestOnly, !active {
            next.status = .cancelled
            next.endedAt = now
            // No step of a cancelled sequence runs any more.
            if flow.controllerId == Rules.sequenceController { next.currentStep = nil }
            return next
        }
        if flow.controllerId == Rules.sequenceController {
            return reconcileSequence(next, tasks: tasks, at: now)
        }
        if flow.syncMode == .taskMirrored, let task = tasks.max(by: { $0.createdAt < $1.createdAt }) {
            let status = mirroredStatus(of: task)
            next.status = status
            if status == .blocked {
                next.blockedTaskId = task.taskId
                next.blockedSummary = task.terminalSummary ?? "task \(task.taskId) ended blocked"
            }
            // Every terminal task ends its mirrored flow, a blocked outcome included.
            if task.status.isTerminal { next.endedAt = task.endedAt ?? now }
        }
        return next
    }

    /// The controller id of clawflow's own sequences (`clawflow run --step ...`).
    public static let sequenceController = "clawflow/sequence"

    /// A sequence follows its steps: a failed, timed-out, lost or cancelled step fails the
    /// flow (`blockedTaskId`, `blockedSummary`); all steps succeeded → `succeeded`; a running
    /// step is the flow's `currentStep`.
    static func reconcileSequence(_ flow: FlowRecord, tasks: [TaskRecord], at now: Timestamp) -> FlowRecord {
        var next = flow
        let steps = flow.steps ?? []
        let byId = Dictionary(tasks.map { ($0.taskId, $0) }, uniquingKeysWith: { a, _ in a })
        var allSucceeded = !steps.isEmpty
        for (index, step) in steps.enumerated() {
            let name = step.objectValue?["name"]?.stringValue ?? "step \(index + 1)"
            guard let id = step.objectValue?["taskId"]?.stringValue, let task = byId[id] else {
                allSucceeded = false
                continue
            }
            if task.status == .running, next.status == .queued || next.status == .running {
                next.status = .running
                next.currentStep = name
            }
            if task.status != .succeeded { allSucceeded = false }
            if [.failed, .timedOut, .lost, .cancelled].contains(task.status) {
                next.status = .failed
                next.blockedTaskId = id
                next.blockedSummary = "step \(index + 1) of \(steps.count) (\(name)) \(Rules.endText(of: task))"
                next.endedAt = task.endedAt ?? now
                next.currentStep = nil
                return next
            }
        }
        if allSucceeded {
            next.status = .succeeded
            next.endedAt = now
            next.currentStep = nil
        }
        return next
    }

    /// How a terminal command task ended, as a clause: "exited with code 2", "timed out after 5 s".
    public static func endText(of task: TaskRecord) -> String {
        switch task.status {
        case .succeeded: return "succeeded"
        case .timedOut:
            if let s = task.timeoutSeconds { return "timed out after \(s) s" }
            return "timed out"
        case .lost: return "was lost: \(task.error ?? "its process vanished")"
        case .cancelled: return "was cancelled"
        case .failed:
            if let signal = task.signal { return "was killed by \(signal)" }
            if let code = task.exitCode { return "exited with code \(code)" }
            return "failed" + (task.error.map { ": \($0)" } ?? "")
        default: return "is \(task.status.rawValue)"
        }
    }

    /// Stamps a changed manifest: revision +1 and `updatedAt`; an unchanged one is returned as is.
    public static func commit(_ next: FlowRecord, over stored: FlowRecord, at now: Timestamp) -> FlowRecord {
        if next == stored { return stored }
        var out = next
        out.revision = stored.revision + 1
        out.updatedAt = now
        return out
    }

    /// The flow an owner key resolves to: the newest non-terminal flow, else the newest.
    public static func ownerPick(_ flows: [(id: String, createdAt: Timestamp, isTerminal: Bool)]) -> String? {
        var best: (id: String, createdAt: Timestamp, isTerminal: Bool)?
        for flow in flows where best == nil || ownerPickPrefers(flow, over: best!) { best = flow }
        return best?.id
    }

    /// Whether the owner-key lookup picks flow `a` over flow `b`: a non-terminal flow over a
    /// terminal one, else the newer (`createdAt`, then id).
    public static func ownerPickPrefers(_ a: (id: String, createdAt: Timestamp, isTerminal: Bool), over b: (id: String, createdAt: Timestamp, isTerminal: Bool))
        -> Bool
    {
        if a.isTerminal != b.isTerminal { return !a.isTerminal }
        return a.createdAt != b.createdAt ? a.createdAt > b.createdAt : a.id > b.id
    }

    /// The task a run id resolves to: the newest active one, else the newest.
    public static func runIdPick(_ tasks: [TaskRecord]) -> TaskRecord? {
        let active = tasks.filter { $0.status.isActive }
        let pool = active.isEmpty ? tasks : active
        return pool.max { ($0.createdAt, $0.taskId) < ($1.createdAt, $1.taskId) }
    }

    /// The events (spool-layout.md, "Event log") that describe the change from `before` to `after`.
    public static func events(flowBefore: FlowRecord?, flowAfter: FlowRecord, tasksBefore: [String: TaskRecord], tasksAfter: [String: TaskRecord]) -> [[String:
        JSON]]
    {
        var out: [[String: JSON]] = []
        if flowBefore == nil {
            out.append([
                "event": "created", "syncMode": .string(flowAfter.syncMode.rawValue), "status": .string(flowAfter.status.rawValue),
                "ownerKey": .string(flowAfter.ownerKey),
            ])
        }
        for id in tasksAfter.keys.sorted() {
            let after = tasksAfter[id]!
            if let before = tasksBefore[id] {
                if before.status != after.status {
                    out.append(["event": "status", "taskId": .string(id), "from": .string(before.status.rawValue), "to": .string(after.status.rawValue)])
                }
                if before.cancelRequestedAt == nil, after.cancelRequestedAt != nil {
                    out.append(["event": "cancel", "taskId": .string(id)])
                }
            } else {
                out.append(["event": "linked", "taskId": .string(id), "runtime": .string(after.runtime), "status": .string(after.status.rawValue)])
            }
        }
        if let before = flowBefore {
            if before.cancelRequestedAt == nil, flowAfter.cancelRequestedAt != nil {
                out.append(["event": "cancel"])
            }
            if before.status != flowAfter.status {
                out.append([
                    "event": "status", "from": .string(before.status.rawValue), "to": .string(flowAfter.status.rawValue), "revision": .int(flowAfter.revision),
                ])
            }
        }
        return out
    }
}

/// Counts of a flow's tasks, as printed by `flows show` and `flows list`.
public struct TaskSummary: Sendable, Equatable {
    /// All linked tasks.
    public var total = 0
    /// Queued or running.
    public var active = 0
    /// Ended in any way.
    public var terminal = 0
    /// Failed, timed out or lost.
    public var failures = 0
    /// Count per status, in `TaskStatus.allCases` order.
    private var counts = [Int](repeating: 0, count: 7)  // one per case of TaskStatus

    /// Count per status name (statuses with no task are absent).
    public var byStatus: [String: Int] {
        Dictionary(uniqueKeysWithValues: zip(TaskStatus.allCases, counts).filter { $0.1 > 0 }.map { ($0.0.rawValue, $0.1) })
    }

    /// The summary of `tasks`.
    public init(_ tasks: [TaskRecord]) {
        for t in tasks {
            let status = t.status  // parsed from the record at each access
            total += 1
            if status.isActive { active += 1 } else { terminal += 1 }
            if status.isFailure { failures += 1 }
            counts[TaskSummary.position(status)] += 1
        }
    }

    /// A status's place in `counts` (its place in `TaskStatus.allCases`).
    private static func position(_ status: TaskStatus) -> Int {
        switch status {
        case .queued: 0
        case .running: 1
        case .succeeded: 2
        case .failed: 3
        case .timedOut: 4
        case .cancelled: 5
        case .lost: 6
        }
    }

    /// The summary as a JSON object.
    public var json: JSON {
        // Members given in key order, so nothing is sorted or searched (a listing makes one a flow).
        var none: String?
        let present = zip(TaskStatus.allCases, counts).filter { $0.1 > 0 }.map { ($0.0.rawValue, JSON.int($0.1)) }
        let statuses = present.sorted { JSON.keyOrder($0.0, $1.0) }
        return .object(
            JSONObject(
                members: [
                    ("active", .int(active)), ("byStatus", .object(JSONObject(members: statuses, duplicate: &none)!)), ("failures", .int(failures)),
                    ("terminal", .int(terminal)), ("total", .int(total)),
                ], duplicate: &none)!)
    }
}

/// How much work is in flight across a set of flows (the `flows list` summary line).
public struct Pressure: Sendable, Equatable {
    /// Every counted flow.
    public var total = 0
    /// Not terminal.
    public var active = 0
    /// Count per flow status, terminal ones included.
    public var byStatus: [FlowStatus: Int] = [:]
    /// Count per status of the flows that are not terminal.
    public var liveByStatus: [FlowStatus: Int] = [:]
    /// Non-terminal flows with a cancel request.
    public var cancelRequested = 0
    /// Terminal flows.
    public var terminal = 0

    /// What the counts need of one flow.
    public struct Counted: Sendable, Equatable {
        /// Its status.
        public var status: FlowStatus
        /// Whether it is terminal.
        public var isTerminal: Bool
        /// Whether it has a cancel request.
        public var cancelRequested: Bool

        /// What the counts need of `flow`.
        public init(_ flow: FlowRecord) {
            status = flow.status
            isTerminal = flow.isTerminal
            cancelRequested = flow.cancelRequestedAt != nil
        }
    }

    /// The pressure of `flows`.
    public init(_ flows: [FlowRecord]) {
        self.init(counting: flows.map(Counted.init))
    }

    /// The pressure of flows of which only what the counts need was kept.
    public init(counting flows: [Counted]) {
        for f in flows {
            total += 1
            byStatus[f.status, default: 0] += 1
            if f.isTerminal {
                terminal += 1
            } else {
                active += 1
                liveByStatus[f.status, default: 0] += 1
                if f.cancelRequested { cancelRequested += 1 }
            }
        }
    }

    /// The counts as a JSON object: total, active, terminal, cancelRequested and one key per status.
    public var json: JSON {
        var o: [String: JSON] = ["total": .int(total), "active": .int(active), "terminal": .int(terminal), "cancelRequested": .int(cancelRequested)]
        for s in FlowStatus.allCases { o[s.rawValue] = .int(byStatus[s] ?? 0) }
        return .object(JSONObject(o))
    }
}
