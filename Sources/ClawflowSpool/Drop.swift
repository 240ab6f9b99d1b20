import ClawflowModel

/// A validated drop (spool-layout.md, "Drop box"): a new task or an update of one.
struct Drop {
    /// A `task` drop.
    struct NewTaskDrop {
        var ownerKey: String?
        var parentFlowId: String?
        var taskId: String?
        var newTask: NewTask
    }

    /// A `task-update` drop.
    struct UpdateDrop {
        var taskId: String?
        var runId: String?
        var update: TaskUpdate
    }

    enum Kind {
        case task(NewTaskDrop)
        case update(UpdateDrop)
    }

    var kind: Kind
    /// The SHA-256 of the drop's bytes (64 lowercase hex digits): its applied record keeps
    /// it, so a later drop under the same name is told from a replay of this one.
    var digest = ""

    /// Fields a reporter may set on a task (besides the ids and `status`, handled apart).
    static let reporterFields: Set<String> = [
        "label", "task", "runId", "childSessionKey", "notifyPolicy", "progressSummary",
        "terminalSummary", "terminalOutcome", "error", "exitCode",
    ]
    /// Fields only clawflow writes; a drop that sets one is refused.
    static let reservedFields: Set<String> = [
        "schema", "createdAt", "startedAt", "lastEventAt", "endedAt", "cancelRequestedAt", "flowRevision", "lastDrop",
        "command", "cwd", "timeoutSeconds", "pid", "pgid", "procStartTime", "supervisorPid", "supervisorStartTime", "logPath", "signal",
    ]

    /// Validates a drop's JSON object.
    init(_ object: JSONObject) throws(DropRejection) {
        func bad(_ message: String) -> DropRejection { DropRejection(code: "bad_fields", message: message) }
        guard let kindValue = object["kind"] else { throw DropRejection(code: "unknown_kind", message: "the drop has no \"kind\"; use \"task\" or \"task-update\"") }
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
        var trial = TaskRecord(taskId: "00000000-0000-4000-8000-000000000000", flowId: "00000000-0000-4000-8000-000000000000", ownerKey: "o", runtime: "x", status: status ?? .queued, at: Timestamp(milliseconds: 0))
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
            self.kind = .task(NewTaskDrop(ownerKey: ownerKey, parentFlowId: parentFlowId, taskId: taskId,
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
