/// The state of one task run (spool-layout.md, "States and transitions").
public enum TaskStatus: String, Sendable, CaseIterable, Codable {
    case queued, running, succeeded, failed
    case timedOut = "timed_out"
    case cancelled, lost

    /// Queued or running.
    public var isActive: Bool { self == .queued || self == .running }
    /// Succeeded, failed, timed out, cancelled or lost.
    public var isTerminal: Bool { !isActive }
    /// Failed, timed out or lost: the run did not do its job.
    public var isFailure: Bool { self == .failed || self == .timedOut || self == .lost }

    /// Whether a task in this status may move to `next` (precedence): active tasks may go
    /// anywhere; only `succeeded` may later become failed, timed out or cancelled; every
    /// other terminal status is final.
    public func allows(_ next: TaskStatus) -> Bool {
        if isActive { return true }
        return self == .succeeded && (next == .failed || next == .timedOut || next == .cancelled)
    }

    /// The names, comma separated, for error messages.
    public static var allNames: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// The state of a flow, tracked apart from its tasks' states.
public enum FlowStatus: String, Sendable, CaseIterable, Codable {
    case queued, running, waiting, blocked, succeeded, failed, cancelled, lost

    /// The names, comma separated, for error messages.
    public static var allNames: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// How a flow's status is kept.
public enum SyncMode: String, Sendable, CaseIterable, Codable {
    /// A one-task flow whose status follows its task.
    case taskMirrored = "task_mirrored"
    /// A flow whose controller sets its status.
    case managed
}

/// Who is told about a task's changes.
public enum NotifyPolicy: String, Sendable, CaseIterable, Codable {
    case doneOnly = "done_only"
    case stateChanges = "state_changes"
    case silent
}
