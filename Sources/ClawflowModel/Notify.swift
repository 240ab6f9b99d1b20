/// What a notification is about: a task's status change, or a managed flow's.
public enum NotificationSubject: String, Sendable, Equatable {
    /// A task changed status (`CLAWFLOW_EVENT=task_status`).
    case task = "task_status"
    /// A managed flow changed status (`CLAWFLOW_EVENT=flow_status`); a mirrored flow's
    /// changes are its task's and are told once, as the task's.
    case flow = "flow_status"
}

/// One status change that the record's `notifyPolicy` says its hooks are told about
/// (README.md, "Notification hooks"). Pure data: the spool decides whether any hook would
/// receive it and records a delivery in the same write.
public struct Notification: Sendable, Equatable {
    /// Task or flow.
    public var subject: NotificationSubject
    /// The flow (of the task, for a task's change).
    public var flowId: String
    /// The task, for a task's change.
    public var taskId: String?
    /// The status before, or nil for a record created by this write.
    public var from: String?
    /// The status after.
    public var to: String
    /// Whether `to` is terminal.
    public var isTerminal: Bool
    /// The job's own hook (`notifyCommand` of the record), if any.
    public var command: String?
}

/// The rule deciding which transitions notify (the one place it is spelled).
public enum Notify {
    /// Whether a record with `policy` is told of a change from `wasTerminal` (nil: created
    /// now) to `isTerminal`, the status having changed: `state_changes` on every change,
    /// creation included; `done_only` once, when it first becomes terminal (a `succeeded`
    /// task that later fails is not told again); `silent` never.
    public static func tells(_ policy: NotifyPolicy, wasTerminal: Bool?, isTerminal: Bool) -> Bool {
        switch policy {
        case .silent: return false
        case .stateChanges: return true
        case .doneOnly: return isTerminal && wasTerminal != true
        }
    }

    /// The notifications of one write: every task whose status changed (or that was created),
    /// then the flow when it is managed and its status changed, each under its own record's
    /// policy (`done_only` when absent). Tasks in id order.
    public static func notifications(flowBefore: FlowRecord?, flowAfter: FlowRecord, tasksBefore: [String: TaskRecord], tasksAfter: [String: TaskRecord])
        -> [Notification]
    {
        var out: [Notification] = []
        for id in tasksAfter.keys.sorted() {
            let after = tasksAfter[id]!
            let before = tasksBefore[id]
            if let before, before.status == after.status { continue }
            guard tells(after.notifyPolicy ?? .doneOnly, wasTerminal: before.map(\.status.isTerminal), isTerminal: after.status.isTerminal) else { continue }
            out.append(
                Notification(
                    subject: .task, flowId: after.parentFlowId, taskId: id, from: before?.status.rawValue, to: after.status.rawValue,
                    isTerminal: after.status.isTerminal, command: after.notifyCommand))
        }
        if flowAfter.syncMode == .managed, flowBefore?.status != flowAfter.status || flowBefore?.isTerminal != flowAfter.isTerminal {
            let wasTerminal = flowBefore.map(\.isTerminal)
            if tells(flowAfter.notifyPolicy ?? .doneOnly, wasTerminal: wasTerminal, isTerminal: flowAfter.isTerminal) {
                out.append(
                    Notification(
                        subject: .flow, flowId: flowAfter.flowId, taskId: nil, from: flowBefore?.status.rawValue, to: flowAfter.status.rawValue,
                        isTerminal: flowAfter.isTerminal, command: flowAfter.notifyCommand))
            }
        }
        return out
    }
}

/// How deliveries are retried (README.md, "Notification hooks"): a hook that fails or
/// times out is run again after `delay(afterAttempt:)`, up to `attempts` runs in all.
public struct DeliveryPolicy: Sendable, Equatable {
    /// Seconds a hook may run before its process group is ended (default 30).
    public var timeoutSeconds: Double
    /// Runs of a failing hook in all, the first included (default 5).
    public var attempts: Int
    /// Seconds before the first retry; each later one waits twice the previous, up to
    /// `maxDelaySeconds` (defaults 5 and 600).
    public var firstDelaySeconds: Double
    /// The longest wait between two runs.
    public var maxDelaySeconds: Double

    /// The defaults, or the values given.
    public init(timeoutSeconds: Double = 30, attempts: Int = 5, firstDelaySeconds: Double = 5, maxDelaySeconds: Double = 600) {
        self.timeoutSeconds = timeoutSeconds
        self.attempts = max(1, attempts)
        self.firstDelaySeconds = max(0, firstDelaySeconds)
        self.maxDelaySeconds = max(0, maxDelaySeconds)
    }

    /// The wait after failed run number `attempt` (1-based) before the next, or nil when
    /// no run is left.
    public func delay(afterAttempt attempt: Int) -> Double? {
        guard attempt < attempts else { return nil }
        var d = firstDelaySeconds
        for _ in 1..<max(1, attempt) { d = min(maxDelaySeconds, d * 2) }
        return min(maxDelaySeconds, d)
    }
}
