/// Why a record was refused: which field and what was wrong with it.
public struct RecordError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The offending field, or nil when the whole document is at fault.
    public var field: String?
    /// What was wrong.
    public var reason: String
    /// Creates an error.
    public init(field: String?, reason: String) { self.field = field; self.reason = reason }
    /// "field: reason" or the reason alone.
    public var description: String { field.map { "field \"\($0)\": \(reason)" } ?? reason }
}

/// The type a known record field must have.
enum FieldKind: Sendable {
    case string, nonEmptyString, id, timestamp, integer, bool, stringArray, any, steps
    case oneOf([String])

    func check(_ value: JSON, _ name: String) throws(RecordError) {
        func bad(_ expected: String) -> RecordError {
            RecordError(field: name, reason: "expected \(expected), found \(value.kindName)")
        }
        switch self {
        case .any: return
        case .string: guard value.stringValue != nil else { throw bad("a string") }
        case .nonEmptyString:
            guard let s = value.stringValue else { throw bad("a string") }
            if s.isEmpty { throw RecordError(field: name, reason: "must not be empty") }
        case .id:
            guard let s = value.stringValue else { throw bad("a lowercase UUID string") }
            if !Identifier.isValid(s) { throw RecordError(field: name, reason: "\"\(s)\" is not a lowercase UUID") }
        case .timestamp:
            guard let s = value.stringValue else { throw bad("an ISO-8601 timestamp string") }
            if Timestamp(iso8601: s) == nil { throw RecordError(field: name, reason: "\"\(s)\" is not an ISO-8601 timestamp") }
        case .integer: guard value.intValue != nil else { throw bad("an integer") }
        case .bool: guard value.boolValue != nil else { throw bad("true or false") }
        case .stringArray:
            guard let a = value.arrayValue, a.allSatisfy({ $0.stringValue != nil }) else { throw bad("an array of strings") }
        case .oneOf(let names):
            guard let s = value.stringValue else { throw bad("a string") }
            if !names.contains(s) {
                throw RecordError(field: name, reason: "\"\(s)\" is not one of \(names.joined(separator: ", "))")
            }
        case .steps:
            guard let a = value.arrayValue else { throw bad("an array of steps") }
            for step in a {
                guard let o = step.objectValue, o["name"]?.stringValue != nil, o["command"]?.stringValue != nil
                else { throw RecordError(field: name, reason: "each step needs string \"name\" and \"command\"") }
                if let t = o["taskId"], !t.isNull, !(t.stringValue.map(Identifier.isValid) ?? false) {
                    throw RecordError(field: name, reason: "a step's taskId must be a lowercase UUID")
                }
            }
        }
    }
}

/// The known fields of a record kind and their types, sorted by name.
struct FieldTable: Sendable {
    let names: [String]
    let kinds: [FieldKind]

    init(_ table: [String: FieldKind]) {
        let sorted = table.sorted { JSON.keyOrder($0.key, $1.key) }
        names = sorted.map(\.key)
        kinds = sorted.map(\.value)
    }
}

/// Shared behaviour of the two record kinds: a JSON object with typed accessors.
public protocol Record: Sendable, Equatable {
    /// Every key of the record, known or not (unknown keys survive a rewrite).
    var fields: JSONObject { get set }
}

extension Record {
    /// The string in `key`, or nil when absent or null.
    public func string(_ key: String) -> String? { fields[key]?.stringValue }
    /// Sets or removes (nil) a string field.
    public mutating func setString(_ key: String, _ value: String?) { fields[key] = value.map(JSON.string) }
    /// The timestamp in `key`, or nil.
    public func timestamp(_ key: String) -> Timestamp? { string(key).flatMap(Timestamp.init(iso8601:)) }
    /// Sets or removes (nil) a timestamp field.
    public mutating func setTimestamp(_ key: String, _ value: Timestamp?) { fields[key] = value.map { .string($0.description) } }
    /// The integer in `key`, or nil.
    public func integer(_ key: String) -> Int64? { fields[key]?.intValue }
    /// Sets or removes (nil) an integer field.
    public mutating func setInteger(_ key: String, _ value: Int64?) { fields[key] = value.map { JSON.int($0) } }

    /// The record as pretty-printed JSON text with sorted keys and a final newline.
    public func fileText() -> String { JSON.object(fields).pretty() + "\n" }
    /// The record's file bytes.
    public func fileBytes() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(1024)
        JSON.object(fields).write(into: &out, indent: 0, pretty: true)
        out.append(0x0A)
        return out
    }

    static func validate(_ fields: JSONObject, schema: FieldTable, required: [String]) throws(RecordError) {
        guard let version = fields["schema"] else { throw RecordError(field: "schema", reason: "missing") }
        guard version.intValue == 1 else {
            throw RecordError(field: "schema", reason: "unsupported schema \(version.compact()); this clawflow reads schema 1")
        }
        // Both lists are sorted by key: walk them side by side.
        var j = 0
        for i in 0..<fields.count {
            let name = fields.keys[i]
            while j < schema.names.count, JSON.keyOrder(schema.names[j], name) { j += 1 }
            guard j < schema.names.count, schema.names[j] == name else { continue }
            let value = fields.values[i]
            if value.isNull, !required.contains(name) { continue }
            try schema.kinds[j].check(value, name)
        }
        for name in required where fields[name] == nil {
            throw RecordError(field: name, reason: "missing")
        }
    }
}

/// One task run: `flows/<flowId>/tasks/<taskId>.json` (spool-layout.md, "Task record").
public struct TaskRecord: Record {
    /// Every key of the record.
    public var fields: JSONObject

    static let schema = FieldTable([
        "taskId": .id, "parentFlowId": .id, "ownerKey": .nonEmptyString, "runtime": .nonEmptyString,
        "status": .oneOf(TaskStatus.allCases.map(\.rawValue)), "label": .string, "task": .string,
        "runId": .string, "childSessionKey": .string,
        "notifyPolicy": .oneOf(NotifyPolicy.allCases.map(\.rawValue)),
        "progressSummary": .string, "terminalSummary": .string, "terminalOutcome": .oneOf(["blocked"]),
        "error": .string, "exitCode": .integer, "signal": .string, "dropUid": .integer,
        "createdAt": .timestamp, "startedAt": .timestamp, "lastEventAt": .timestamp, "endedAt": .timestamp,
        "cancelRequestedAt": .timestamp,
        "command": .stringArray, "cwd": .string, "timeoutSeconds": .integer, "pid": .integer, "pgid": .integer,
        "procStartTime": .integer, "supervisorPid": .integer, "supervisorStartTime": .integer, "logPath": .string,
        "flowRevision": .integer,
    ])
    static let required = ["taskId", "parentFlowId", "ownerKey", "runtime", "status", "createdAt"]

    /// Wraps already-validated fields.
    public init(validating fields: JSONObject) throws(RecordError) {
        try Self.validate(fields, schema: Self.schema, required: Self.required)
        if let r = fields["runtime"]?.stringValue, !RuntimeName.isValid(r) {
            throw RecordError(field: "runtime", reason: "\"\(r)\" must match [a-z0-9_-]{1,32}")
        }
        self.fields = fields
    }

    /// A new task record with the required fields.
    public init(taskId: String, flowId: String, ownerKey: String, runtime: String, status: TaskStatus, at now: Timestamp) {
        fields = [
            "schema": .int(1), "taskId": .string(taskId), "parentFlowId": .string(flowId),
            "ownerKey": .string(ownerKey), "runtime": .string(runtime), "status": .string(status.rawValue),
            "notifyPolicy": .string(NotifyPolicy.doneOnly.rawValue),
            "createdAt": .string(now.description), "lastEventAt": .string(now.description),
        ]
        if status == .running { setTimestamp("startedAt", now) }
        if status.isTerminal { setTimestamp("endedAt", now) }
    }

    /// The task's id.
    public var taskId: String { string("taskId")! }
    /// The flow the task belongs to.
    public var parentFlowId: String { string("parentFlowId")! }
    /// The session that owns the task.
    public var ownerKey: String { string("ownerKey")! }
    /// Who runs it: `cli` for commands clawflow runs, or the reporting program's name.
    public var runtime: String { string("runtime")! }
    /// The run id, if the reporter gave one.
    public var runId: String? { string("runId") }
    /// When the task was created.
    public var createdAt: Timestamp { timestamp("createdAt")! }
    /// The task's status.
    public var status: TaskStatus {
        get { TaskStatus(rawValue: string("status")!)! }
        set { setString("status", newValue.rawValue) }
    }
    /// Whether the run ended blocked (only meaningful when it succeeded).
    public var isBlockedOutcome: Bool { string("terminalOutcome") == "blocked" }
    /// Whether clawflow runs this task as a command.
    public var isCommand: Bool { runtime == "cli" }
}

/// Runtime names for tasks reported by other programs.
public enum RuntimeName {
    /// True when `name` matches `[a-z0-9_-]{1,32}`.
    public static func isValid(_ name: String) -> Bool {
        let u = name.utf8
        return (1...32).contains(u.count) && u.allSatisfy {
            ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
        }
    }
}

/// One flow: `flows/<flowId>/manifest.json` (spool-layout.md, "Flow record").
public struct FlowRecord: Record {
    /// Every key of the record.
    public var fields: JSONObject

    static let schema = FieldTable([
        "flowId": .id, "syncMode": .oneOf(SyncMode.allCases.map(\.rawValue)), "ownerKey": .nonEmptyString,
        "controllerId": .nonEmptyString, "revision": .integer, "status": .oneOf(FlowStatus.allCases.map(\.rawValue)),
        "notifyPolicy": .oneOf(NotifyPolicy.allCases.map(\.rawValue)), "goal": .string, "currentStep": .string,
        "blockedTaskId": .string, "blockedSummary": .string, "stateJson": .any, "waitJson": .any,
        "cancelRequestedAt": .timestamp, "cancelRequestOnly": .bool, "createdAt": .timestamp, "updatedAt": .timestamp,
        "endedAt": .timestamp, "steps": .steps,
    ])
    static let required = ["flowId", "syncMode", "ownerKey", "revision", "status", "createdAt", "updatedAt"]

    /// Wraps fields after checking them against the schema.
    public init(validating fields: JSONObject) throws(RecordError) {
        try Self.validate(fields, schema: Self.schema, required: Self.required)
        for key in ["stateJson", "waitJson"] where fields[key] == nil {
            throw RecordError(field: key, reason: "missing (it is always present, null when empty)")
        }
        if fields["syncMode"]?.stringValue == SyncMode.managed.rawValue, fields["controllerId"]?.stringValue == nil {
            throw RecordError(field: "controllerId", reason: "missing (required for managed flows)")
        }
        self.fields = fields
    }

    /// A new flow record at revision 0.
    public init(flowId: String, syncMode: SyncMode, ownerKey: String, controllerId: String?, status: FlowStatus, goal: String?, at now: Timestamp) {
        fields = [
            "schema": .int(1), "flowId": .string(flowId), "syncMode": .string(syncMode.rawValue),
            "ownerKey": .string(ownerKey), "revision": .int(0), "status": .string(status.rawValue),
            "notifyPolicy": .string(NotifyPolicy.doneOnly.rawValue),
            "stateJson": .null, "waitJson": .null,
            "createdAt": .string(now.description), "updatedAt": .string(now.description),
        ]
        setString("controllerId", controllerId)
        setString("goal", goal)
    }

    /// The flow's id.
    public var flowId: String { string("flowId")! }
    /// Mirrored or managed.
    public var syncMode: SyncMode { SyncMode(rawValue: string("syncMode")!)! }
    /// The session that owns the job.
    public var ownerKey: String { string("ownerKey")! }
    /// The controller of a managed flow.
    public var controllerId: String? { string("controllerId") }
    /// +1 on every write of the manifest.
    public var revision: Int64 {
        get { integer("revision")! }
        set { setInteger("revision", newValue) }
    }
    /// The flow's status.
    public var status: FlowStatus {
        get { FlowStatus(rawValue: string("status")!)! }
        set { setString("status", newValue.rawValue) }
    }
    /// When the flow was created.
    public var createdAt: Timestamp { timestamp("createdAt")! }
    /// When the flow ended, if it did.
    public var endedAt: Timestamp? { timestamp("endedAt") }
    /// When a cancel was requested (sticky).
    public var cancelRequestedAt: Timestamp? { timestamp("cancelRequestedAt") }
    /// The cancel request came from the controller's `request-cancel`: the controller ends the
    /// flow, no task settling does (spool-layout.md, "Controller commands").
    public var isCancelRequestOnly: Bool {
        get { fields["cancelRequestOnly"]?.boolValue == true }
        set { fields["cancelRequestOnly"] = newValue ? .bool(true) : nil }
    }

    /// The one terminal predicate: succeeded, failed, cancelled, lost, or blocked with `endedAt`.
    public var isTerminal: Bool {
        switch status {
        case .succeeded, .failed, .cancelled, .lost: true
        case .blocked: endedAt != nil
        case .queued, .running, .waiting: false
        }
    }
}
