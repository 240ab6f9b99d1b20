/// The drop box's pure rules (spool-layout.md, "Drop box"): a drop's name, and what a drop's
/// JSON object may say. The spool reads, claims and applies drops (ClawflowSpool/DropBox/).

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

    /// The value of a known field; setting nil removes it.
    public subscript(_ key: RecordKey) -> JSON? {
        get { fields[key.rawValue] }
        set { fields[key.rawValue] = newValue }
    }

    /// A new task of `runtime`.
    public init(runtime: String, status: TaskStatus = .queued, taskId: String? = nil, fields: [String: JSON] = [:]) {
        self.runtime = runtime
        self.status = status
        self.taskId = taskId
        self.fields = fields
    }
}

/// Why a drop was refused: the code and sentence written to its `.reason` file.
public struct DropRejection: Error, Sendable {
    /// The reason code (spool-layout.md, "Drop box": `bad_name`, `not_json`, ...).
    public var code: String
    /// A sentence saying what is wrong.
    public var message: String
    /// A rejection.
    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }
}

/// The drop name rule: `[A-Za-z0-9._-]{1,128}`, not starting with `.`.
public enum DropName {
    /// True when `name` may be a drop's name.
    public static func isValid(_ name: String) -> Bool {
        let u = name.utf8
        guard (1...128).contains(u.count), u.first != UInt8(ascii: ".") else { return false }
        return u.allSatisfy {
            ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39)
                || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
        }
    }
}

/// A validated drop (spool-layout.md, "Drop box"): a new task or an update of one.
public struct Drop: Sendable {
    /// A `task` drop.
    public struct NewTaskDrop: Sendable {
        /// The owner key (required without a parent flow).
        public var ownerKey: String?
        /// The flow to link the task to, or nil for a new one-task flow.
        public var parentFlowId: String?
        /// The task id the reporter chose, if any.
        public var taskId: String?
        /// The task to create.
        public var newTask: NewTask
    }

    /// A `task-update` drop.
    public struct UpdateDrop: Sendable {
        /// The task, by id...
        public var taskId: String?
        /// ...or by run id.
        public var runId: String?
        /// The change.
        public var update: TaskUpdate
    }

    /// The two kinds of drop.
    public enum Kind: Sendable {
        /// A new task (`"kind": "task"`).
        case task(NewTaskDrop)
        /// A state change of a task (`"kind": "task-update"`).
        case update(UpdateDrop)
    }

    /// What the drop asks for.
    public var kind: Kind
    /// The SHA-256 of the drop's bytes (64 lowercase hex digits): its applied record keeps
    /// it, so a later drop under the same name is told from a replay of this one.
    public var digest = ""
    /// The user who owns the drop file, when it is not the user clawflow runs as (a member
    /// of a shared spool's group): its tasks may be changed only by its own drops, and its
    /// names are idempotency keys of its own.
    public var uid: UInt32?

    /// Fields only clawflow writes; a drop that sets one is refused.
    public static let reservedFields: Set<String> = [
        "schema", "createdAt", "startedAt", "lastEventAt", "endedAt", "cancelRequestedAt", "flowRevision", "lastDrop", "dropUid",
        "command", "cwd", "timeoutSeconds", "pid", "pgid", "procStartTime", "supervisorPid", "supervisorStartTime", "logPath", "logLimit", "signal",
    ]

    /// Validates a drop's JSON object.
    public init(_ object: JSONObject) throws(DropRejection) {
        func bad(_ message: String) -> DropRejection { DropRejection(code: "bad_fields", message: message) }
        guard let kindValue = object["kind"] else {
            throw DropRejection(code: "unknown_kind", message: "the drop has no \"kind\"; use \"task\" or \"task-update\"")
        }
        guard let kind = kindValue.stringValue else { throw bad("\"kind\" must be a string") }
        for key in object.keys where Drop.reservedFields.contains(key) {
            throw bad("\"\(key)\" is written by clawflow itself and may not be set by a drop")
        }
        var status: TaskStatus?
        if let s = object["status"], !s.isNull {
            guard let text = s.stringValue, let parsed = TaskStatus(rawValue: text) else {
                throw bad("\"status\" must be one of \(TaskStatus.allNames)")
            }
            status = parsed
        }
        func optionalString(_ key: String) throws(DropRejection) -> String? {
            guard let v = object[key], !v.isNull else { return nil }
            guard let s = v.stringValue else { throw bad("\"\(key)\" must be a string, not a \(v.kindName)") }
            return s
        }
        func optionalId(_ key: String) throws(DropRejection) -> String? {
            guard let s = try optionalString(key) else { return nil }
            guard Identifier.isValid(s) else { throw bad("\"\(key)\" must be a lowercase UUID") }
            return s
        }
        // Every other field, checked against the task record's types by a trial record.
        var extra: [String: JSON] = [:]
        for (key, value) in object where !["kind", "status", "ownerKey", "parentFlowId", "taskId", "runtime"].contains(key) && !value.isNull {
            extra[key] = value
        }
        var trial = TaskRecord(
            taskId: "00000000-0000-4000-8000-000000000000", flowId: "00000000-0000-4000-8000-000000000000", ownerKey: "o", runtime: "x",
            status: status ?? .queued, at: Timestamp(milliseconds: 0))
        for (k, v) in extra { trial.fields[k] = v }
        do { _ = try TaskRecord(validating: trial.fields) } catch { throw bad(error.description) }

        switch kind {
        case "task":
            let parentFlowId = try optionalId("parentFlowId")
            let taskId = try optionalId("taskId")
            var ownerKey: String?
            if let raw = try optionalString("ownerKey") {
                do { ownerKey = try OwnerKey.validate(raw) } catch { throw bad("\"ownerKey\": \(error.description)") }
            }
            if parentFlowId == nil, ownerKey == nil { throw bad("a task drop needs \"ownerKey\" (or \"parentFlowId\" to join a flow)") }
            guard let runtime = try optionalString("runtime") else { throw bad("a task drop needs \"runtime\"") }
            guard RuntimeName.isValid(runtime), runtime != "cli" else {
                throw bad("\"runtime\" must match [a-z0-9_-]{1,32} and not be cli (reserved for commands clawflow runs)")
            }
            self.kind = .task(
                NewTaskDrop(
                    ownerKey: ownerKey, parentFlowId: parentFlowId, taskId: taskId,
                    newTask: NewTask(runtime: runtime, status: status ?? .queued, fields: extra)))
        case "task-update":
            let taskId = try optionalId("taskId")
            let runId = try optionalString("runId")
            if taskId == nil, runId == nil { throw bad("a task-update drop needs \"taskId\" or \"runId\"") }
            if object["ownerKey"] != nil || object["parentFlowId"] != nil || object["runtime"] != nil {
                throw bad("a task-update may not change ownerKey, parentFlowId or runtime")
            }
            extra["runId"] = nil
            self.kind = .update(UpdateDrop(taskId: taskId, runId: runId, update: TaskUpdate(status: status, fields: extra)))
        default:
            throw DropRejection(code: "unknown_kind", message: "unknown kind \"\(sanitized(kind))\"; use \"task\" or \"task-update\"")
        }
    }
}
