/// Why a record was refused: which field and what was wrong with it.
public struct RecordError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The offending field, or nil when the whole document is at fault.
    public var field: String?
    /// What was wrong.
    public var reason: String
    /// Creates an error.
    public init(field: String?, reason: String) {
        self.field = field
        self.reason = reason
    }
    /// "field: reason" or the reason alone.
    public var description: String { field.map { "field \"\($0)\": \(reason)" } ?? reason }
}

/// The known fields of flow and task records (spool-layout.md, "Records"): the one spelling
/// of each key. Records keep every key, known or not, in their JSON object (unknown keys
/// survive a rewrite); these are the ones clawflow reads and writes by name.
public enum RecordKey: String, Sendable, CaseIterable {
    // Both kinds.
    /// `1`.
    case schema
    /// The owning session.
    case ownerKey
    /// The record's status.
    case status
    /// When the owner is told.
    case notifyPolicy
    /// A job's own hook: a shell command run on each notification the policy allows.
    case notifyCommand
    /// Creation time.
    case createdAt
    /// End time.
    case endedAt
    /// Cancel request time (sticky).
    case cancelRequestedAt
    // Tasks.
    /// The task's id.
    case taskId
    /// The task's flow.
    case parentFlowId
    /// Who runs the task.
    case runtime
    /// A short label.
    case label
    /// What the task does.
    case task
    /// The reporter's run id.
    case runId
    /// The reporter's child session.
    case childSessionKey
    /// The latest progress report.
    case progressSummary
    /// How the run ended, in the reporter's words.
    case terminalSummary
    /// `blocked`.
    case terminalOutcome
    /// What went wrong.
    case error
    /// A command's exit code.
    case exitCode
    /// The signal that ended a command.
    case signal
    /// The user whose drops own the task.
    case dropUid
    /// The last drop applied to the task.
    case lastDrop
    /// Start time.
    case startedAt
    /// Time of the last report.
    case lastEventAt
    /// A command's argv.
    case command
    /// A command's working directory.
    case cwd
    /// A command's time limit.
    case timeoutSeconds
    /// A command's pid.
    case pid
    /// A command's process group.
    case pgid
    /// A command's start time.
    case procStartTime
    /// Its supervisor's pid.
    case supervisorPid
    /// Its supervisor's start time.
    case supervisorStartTime
    /// A command's output log.
    case logPath
    /// The size a command's log is kept under, in bytes.
    case logLimit
    /// The flow's revision at the task's last write.
    case flowRevision
    /// The environment a command runs with (recorded by `run`, used again by `retry`).
    case environment
    // Flows.
    /// The flow's id.
    case flowId
    /// Mirrored or managed.
    case syncMode
    /// A managed flow's controller.
    case controllerId
    /// The manifest's revision.
    case revision
    /// What the job is for.
    case goal
    /// The current step.
    case currentStep
    /// The task a flow is blocked on.
    case blockedTaskId
    /// Why it is blocked.
    case blockedSummary
    /// The controller's state.
    case stateJson
    /// What a waiting flow waits for.
    case waitJson
    /// The cancel was a controller's request only.
    case cancelRequestOnly
    /// Time of the manifest's last write.
    case updatedAt
    /// A sequence's steps.
    case steps
    /// The queue a command flow waits in for a slot.
    case queue
    /// Its place in the queue: higher starts first.
    case priority
    /// How many more times a failed or timed-out command job runs again by itself.
    case retriesLeft
    /// How long its supervisor waits before such a retry.
    case retryDelaySeconds
    /// The flows a command job starts only after (`run --after`).
    case after
}

/// The type a known record field must have.
enum FieldKind: Sendable {
    case string, nonEmptyString, id, timestamp, integer, bool, stringArray, stringMap, any, steps
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
        case .stringMap:
            guard let o = value.objectValue, o.values.allSatisfy({ $0.stringValue != nil }) else { throw bad("an object of strings") }
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

    /// Written as a dictionary literal, kept as pairs: a `[RecordKey: FieldKind]` would make
    /// the runtime look up `RecordKey: Hashable` when the first table is built, a scan of
    /// every conformance record of the binary (bench/README.md, "Start-up"). The literal
    /// lists its keys in the order records are written (`JSON.keyOrder`, their UTF-8 bytes),
    /// which is checked here, not sorted: sorting them cost every command that reads a
    /// record 0.1 M instructions. A key out of order, or given twice, is a programming error.
    init(_ table: KeyValuePairs<RecordKey, FieldKind>) {
        names = table.map(\.key.rawValue)
        kinds = table.map(\.value)
        precondition(zip(names, names.dropFirst()).allSatisfy { JSON.keyOrder($0, $1) }, "a field table lists its keys out of byte order, or one twice")
        var ends = [Int](repeating: 0, count: 128)
        for name in names { ends[Int(name.utf8.first!)] += 1 }
        for b in 1..<128 { ends[b] += ends[b - 1] }
        endOfFirstByte = ends
    }

    /// For each ASCII byte, the end in `names` of the names beginning with it (they start at
    /// the previous byte's end): a field is found by comparing it with the few names of its
    /// first letter, not by walking the whole table.
    private let endOfFirstByte: [Int]

    /// The place of `name` in the table, or nil when it is not a known field.
    func index(of name: String) -> Int? {
        guard let first = name.utf8.first, first < 128 else { return nil }
        let b = Int(first)
        var j = b == 0 ? 0 : endOfFirstByte[b - 1]
        while j < endOfFirstByte[b] {
            if names[j] == name { return j }
            j += 1
        }
        return nil
    }
}

extension JSONObject {
    /// An object with the members of known record fields.
    public init(known dictionary: [RecordKey: JSON]) {
        self.init(Dictionary(uniqueKeysWithValues: dictionary.map { ($0.key.rawValue, $0.value) }))
    }
}

/// Shared behaviour of the two record kinds: a JSON object with typed accessors.
public protocol Record: Sendable, Equatable {
    /// Every key of the record, known or not (unknown keys survive a rewrite).
    var fields: JSONObject { get set }
}

extension Record {
    /// The value of a known field, or nil when absent; setting nil removes it.
    public subscript(_ key: RecordKey) -> JSON? {
        get { fields[key.rawValue] }
        set { fields[key.rawValue] = newValue }
    }
    /// The string in `key`, or nil when absent or null.
    public func string(_ key: RecordKey) -> String? { fields[key.rawValue]?.stringValue }
    /// Sets or removes (nil) a string field.
    public mutating func setString(_ key: RecordKey, _ value: String?) { fields[key.rawValue] = value.map(JSON.string) }
    /// The timestamp in `key`, or nil.
    public func timestamp(_ key: RecordKey) -> Timestamp? { string(key).flatMap(Timestamp.init(iso8601:)) }
    /// Sets or removes (nil) a timestamp field.
    public mutating func setTimestamp(_ key: RecordKey, _ value: Timestamp?) { fields[key.rawValue] = value.map { .string($0.description) } }
    /// The integer in `key`, or nil.
    public func integer(_ key: RecordKey) -> Int64? { fields[key.rawValue]?.intValue }
    /// Sets or removes (nil) an integer field.
    public mutating func setInteger(_ key: RecordKey, _ value: Int64?) { fields[key.rawValue] = value.map { JSON.int($0) } }

    // The fields both kinds have.

    /// The session that owns the record (and its flow).
    public var ownerKey: String { string(.ownerKey)! }
    /// When the owner is told.
    public var notifyPolicy: NotifyPolicy? { string(.notifyPolicy).flatMap(NotifyPolicy.init(rawValue:)) }
    /// The job's own hook (`sh -c` text), run on each notification its policy allows.
    public var notifyCommand: String? {
        get { string(.notifyCommand) }
        set { setString(.notifyCommand, newValue) }
    }
    /// When the record was created.
    public var createdAt: Timestamp { timestamp(.createdAt)! }
    /// When it ended, if it did.
    public var endedAt: Timestamp? {
        get { timestamp(.endedAt) }
        set { setTimestamp(.endedAt, newValue) }
    }
    /// When a cancel was asked for (sticky).
    public var cancelRequestedAt: Timestamp? {
        get { timestamp(.cancelRequestedAt) }
        set { setTimestamp(.cancelRequestedAt, newValue) }
    }

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

    static func validate(_ fields: JSONObject, schema: FieldTable, required: [RecordKey]) throws(RecordError) {
        guard let version = fields[RecordKey.schema.rawValue] else { throw RecordError(field: RecordKey.schema.rawValue, reason: "missing") }
        guard version.intValue == 1 else {
            throw RecordError(field: RecordKey.schema.rawValue, reason: "unsupported schema \(version.compact()); this clawflow reads schema 1")
        }
        for i in 0..<fields.count {
            let name = fields.keys[i]
            guard let j = schema.index(of: name) else { continue }
            let value = fields.values[i]
            if value.isNull, !required.contains(where: { $0.rawValue == name }) { continue }
            try schema.kinds[j].check(value, name)
        }
        for key in required where fields[key.rawValue] == nil {
            throw RecordError(field: key.rawValue, reason: "missing")
        }
    }
}

/// One task run: `flows/<flowId>/tasks/<taskId>.json` (spool-layout.md, "Task record").
public struct TaskRecord: Record {
    /// Every key of the record.
    public var fields: JSONObject

    static let schema = FieldTable([
        .cancelRequestedAt: .timestamp, .childSessionKey: .string, .command: .stringArray, .createdAt: .timestamp, .cwd: .string,
        .dropUid: .integer, .endedAt: .timestamp, .environment: .stringMap, .error: .string, .exitCode: .integer,
        .flowRevision: .integer, .label: .string, .lastEventAt: .timestamp, .logLimit: .integer, .logPath: .string,
        .notifyCommand: .string, .notifyPolicy: .oneOf(NotifyPolicy.allCases.map(\.rawValue)), .ownerKey: .nonEmptyString,
        .parentFlowId: .id, .pgid: .integer, .pid: .integer, .procStartTime: .integer, .progressSummary: .string, .runId: .string,
        .runtime: .nonEmptyString, .signal: .string, .startedAt: .timestamp, .status: .oneOf(TaskStatus.allCases.map(\.rawValue)),
        .supervisorPid: .integer, .supervisorStartTime: .integer, .task: .string, .taskId: .id,
        .terminalOutcome: .oneOf(["blocked"]), .terminalSummary: .string, .timeoutSeconds: .integer,
    ])
    static let required: [RecordKey] = [.taskId, .parentFlowId, .ownerKey, .runtime, .status, .createdAt]

    /// Wraps already-validated fields.
    public init(validating fields: JSONObject) throws(RecordError) {
        try Self.validate(fields, schema: Self.schema, required: Self.required)
        if let r = fields[RecordKey.runtime.rawValue]?.stringValue, !RuntimeName.isValid(r) {
            throw RecordError(field: RecordKey.runtime.rawValue, reason: "\"\(r)\" must match [a-z0-9_-]{1,32}")
        }
        self.fields = fields
    }

    /// A new task record with the required fields.
    public init(taskId: String, flowId: String, ownerKey: String, runtime: String, status: TaskStatus, at now: Timestamp) {
        fields = JSONObject(known: [
            .schema: .int(1), .taskId: .string(taskId), .parentFlowId: .string(flowId),
            .ownerKey: .string(ownerKey), .runtime: .string(runtime), .status: .string(status.rawValue),
            .notifyPolicy: .string(NotifyPolicy.doneOnly.rawValue),
            .createdAt: .string(now.description), .lastEventAt: .string(now.description),
        ])
        if status == .running { startedAt = now }
        if status.isTerminal { endedAt = now }
    }

    /// The task's id.
    public var taskId: String { string(.taskId)! }
    /// The flow the task belongs to.
    public var parentFlowId: String { string(.parentFlowId)! }
    /// Who runs it: `cli` for commands clawflow runs, or the reporting program's name.
    public var runtime: String { string(.runtime)! }
    /// The task's status.
    public var status: TaskStatus {
        get { TaskStatus(rawValue: string(.status)!)! }
        set { setString(.status, newValue.rawValue) }
    }
    /// A short label.
    public var label: String? {
        get { string(.label) }
        set { setString(.label, newValue) }
    }
    /// What the task does (for a command, its command line).
    public var task: String? {
        get { string(.task) }
        set { setString(.task, newValue) }
    }
    /// The run id, if the reporter gave one.
    public var runId: String? {
        get { string(.runId) }
        set { setString(.runId, newValue) }
    }
    /// The reporter's child session.
    public var childSessionKey: String? {
        get { string(.childSessionKey) }
        set { setString(.childSessionKey, newValue) }
    }
    /// The latest progress report.
    public var progressSummary: String? {
        get { string(.progressSummary) }
        set { setString(.progressSummary, newValue) }
    }
    /// How the run ended, in the reporter's words.
    public var terminalSummary: String? {
        get { string(.terminalSummary) }
        set { setString(.terminalSummary, newValue) }
    }
    /// `blocked` when a run that succeeded ended blocked.
    public var terminalOutcome: String? {
        get { string(.terminalOutcome) }
        set { setString(.terminalOutcome, newValue) }
    }
    /// What went wrong.
    public var error: String? {
        get { string(.error) }
        set { setString(.error, newValue) }
    }
    /// A command's exit code.
    public var exitCode: Int64? {
        get { integer(.exitCode) }
        set { setInteger(.exitCode, newValue) }
    }
    /// The signal that ended a command (`SIGKILL`, ...).
    public var signal: String? {
        get { string(.signal) }
        set { setString(.signal, newValue) }
    }
    /// The user whose drops own the task (a member of a shared spool's group).
    public var dropUid: Int64? {
        get { integer(.dropUid) }
        set { setInteger(.dropUid, newValue) }
    }
    /// The name of the last drop applied to the task.
    public var lastDrop: String? {
        get { string(.lastDrop) }
        set { setString(.lastDrop, newValue) }
    }
    /// When it started running.
    public var startedAt: Timestamp? {
        get { timestamp(.startedAt) }
        set { setTimestamp(.startedAt, newValue) }
    }
    /// When it was last reported on.
    public var lastEventAt: Timestamp? {
        get { timestamp(.lastEventAt) }
        set { setTimestamp(.lastEventAt, newValue) }
    }
    /// A command task's argv.
    public var command: [String]? {
        get { self[.command]?.arrayValue?.compactMap(\.stringValue) }
        set { self[.command] = newValue.map { .array($0.map(JSON.string)) } }
    }
    /// A command task's working directory.
    public var cwd: String? {
        get { string(.cwd) }
        set { setString(.cwd, newValue) }
    }
    /// A command task's time limit in seconds.
    public var timeoutSeconds: Int64? {
        get { integer(.timeoutSeconds) }
        set { setInteger(.timeoutSeconds, newValue) }
    }
    /// A command's pid.
    public var pid: Int64? {
        get { integer(.pid) }
        set { setInteger(.pid, newValue) }
    }
    /// A command's process group.
    public var pgid: Int64? {
        get { integer(.pgid) }
        set { setInteger(.pgid, newValue) }
    }
    /// A command's start time (field 22 of /proc/<pid>/stat).
    public var procStartTime: Int64? {
        get { integer(.procStartTime) }
        set { setInteger(.procStartTime, newValue) }
    }
    /// The pid of the supervisor that runs a command task.
    public var supervisorPid: Int64? {
        get { integer(.supervisorPid) }
        set { setInteger(.supervisorPid, newValue) }
    }
    /// The supervisor's start time.
    public var supervisorStartTime: Int64? {
        get { integer(.supervisorStartTime) }
        set { setInteger(.supervisorStartTime, newValue) }
    }
    /// A command's output log (absolute).
    public var logPath: String? {
        get { string(.logPath) }
        set { setString(.logPath, newValue) }
    }
    /// The size in bytes its supervisor keeps a command's log under (spool-layout.md, "Task logs").
    public var logLimit: Int64? {
        get { integer(.logLimit) }
        set { setInteger(.logLimit, newValue) }
    }
    /// The flow's revision when the task was last written.
    public var flowRevision: Int64? {
        get { integer(.flowRevision) }
        set { setInteger(.flowRevision, newValue) }
    }
    /// The environment a command task runs with (`NAME`: value), when it was recorded.
    public var environment: [String: String]? {
        get { self[.environment]?.objectValue.map { o in Dictionary(uniqueKeysWithValues: zip(o.keys, o.values.map { $0.stringValue ?? "" })) } }
        set { self[.environment] = newValue.map { .object(JSONObject($0.mapValues(JSON.string))) } }
    }
    /// Whether the run ended blocked (only meaningful when it succeeded).
    public var isBlockedOutcome: Bool { terminalOutcome == "blocked" }
    /// Whether clawflow runs this task as a command.
    public var isCommand: Bool { runtime == "cli" }
}

/// Runtime names for tasks reported by other programs.
public enum RuntimeName {
    /// True when `name` matches `[a-z0-9_-]{1,32}`.
    public static func isValid(_ name: String) -> Bool {
        let u = name.utf8
        return (1...32).contains(u.count)
            && u.allSatisfy {
                ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
            }
    }
}

/// One flow: `flows/<flowId>/manifest.json` (spool-layout.md, "Flow record").
public struct FlowRecord: Record {
    /// Every key of the record.
    public var fields: JSONObject

    static let schema = FieldTable([
        .after: .stringArray, .blockedSummary: .string, .blockedTaskId: .string, .cancelRequestOnly: .bool,
        .cancelRequestedAt: .timestamp, .controllerId: .nonEmptyString, .createdAt: .timestamp, .currentStep: .string,
        .endedAt: .timestamp, .flowId: .id, .goal: .string, .notifyCommand: .string,
        .notifyPolicy: .oneOf(NotifyPolicy.allCases.map(\.rawValue)), .ownerKey: .nonEmptyString, .priority: .integer,
        .queue: .nonEmptyString, .retriesLeft: .integer, .retryDelaySeconds: .integer, .revision: .integer, .stateJson: .any,
        .status: .oneOf(FlowStatus.allCases.map(\.rawValue)), .steps: .steps,
        .syncMode: .oneOf(SyncMode.allCases.map(\.rawValue)), .updatedAt: .timestamp, .waitJson: .any,
    ])
    static let required: [RecordKey] = [.flowId, .syncMode, .ownerKey, .revision, .status, .createdAt, .updatedAt]

    /// Wraps fields after checking them against the schema.
    public init(validating fields: JSONObject) throws(RecordError) {
        try Self.validate(fields, schema: Self.schema, required: Self.required)
        for key in [RecordKey.stateJson, .waitJson] where fields[key.rawValue] == nil {
            throw RecordError(field: key.rawValue, reason: "missing (it is always present, null when empty)")
        }
        if fields[RecordKey.syncMode.rawValue]?.stringValue == SyncMode.managed.rawValue, fields[RecordKey.controllerId.rawValue]?.stringValue == nil {
            throw RecordError(field: "controllerId", reason: "missing (required for managed flows)")
        }
        self.fields = fields
    }

    /// A new flow record at revision 0.
    public init(flowId: String, syncMode: SyncMode, ownerKey: String, controllerId: String?, status: FlowStatus, goal: String?, at now: Timestamp) {
        fields = JSONObject(known: [
            .schema: .int(1), .flowId: .string(flowId), .syncMode: .string(syncMode.rawValue),
            .ownerKey: .string(ownerKey), .revision: .int(0), .status: .string(status.rawValue),
            .notifyPolicy: .string(NotifyPolicy.doneOnly.rawValue),
            .stateJson: .null, .waitJson: .null,
            .createdAt: .string(now.description), .updatedAt: .string(now.description),
        ])
        setString(.controllerId, controllerId)
        self.goal = goal
    }

    /// The flow's id.
    public var flowId: String { string(.flowId)! }
    /// Mirrored or managed.
    public var syncMode: SyncMode { SyncMode(rawValue: string(.syncMode)!)! }
    /// The controller of a managed flow.
    public var controllerId: String? { string(.controllerId) }
    /// +1 on every write of the manifest.
    public var revision: Int64 {
        get { integer(.revision)! }
        set { setInteger(.revision, newValue) }
    }
    /// The flow's status.
    public var status: FlowStatus {
        get { FlowStatus(rawValue: string(.status)!)! }
        set { setString(.status, newValue.rawValue) }
    }
    /// What the job is for.
    public var goal: String? {
        get { string(.goal) }
        set { setString(.goal, newValue) }
    }
    /// The step a controller (or a sequence) is at.
    public var currentStep: String? {
        get { string(.currentStep) }
        set { setString(.currentStep, newValue) }
    }
    /// The task the flow is blocked on.
    public var blockedTaskId: String? {
        get { string(.blockedTaskId) }
        set { setString(.blockedTaskId, newValue) }
    }
    /// Why the flow is blocked (or how it failed).
    public var blockedSummary: String? {
        get { string(.blockedSummary) }
        set { setString(.blockedSummary, newValue) }
    }
    /// The controller's state (always present; null when empty).
    public var stateJson: JSON {
        get { self[.stateJson] ?? .null }
        set { self[.stateJson] = newValue }
    }
    /// What a waiting flow waits for (always present; null when empty).
    public var waitJson: JSON {
        get { self[.waitJson] ?? .null }
        set { self[.waitJson] = newValue }
    }
    /// A sequence's steps (`name`, `command`, and the `taskId` of a step that was started).
    public var steps: [JSON]? {
        get { self[.steps]?.arrayValue }
        set { self[.steps] = newValue.map(JSON.array) }
    }
    /// The queue a command flow waits in for a slot (`clawflow run --queue`).
    public var queue: String? {
        get { string(.queue) }
        set { setString(.queue, newValue) }
    }
    /// Its priority in the queue (higher starts first; 0 when absent).
    public var priority: Int64 {
        get { integer(.priority) ?? 0 }
        set { setInteger(.priority, newValue == 0 ? nil : newValue) }
    }
    /// How many more times a failed or timed-out command job runs again by itself (`run --retries`; 0 when absent).
    public var retriesLeft: Int64 {
        get { integer(.retriesLeft) ?? 0 }
        set { setInteger(.retriesLeft, newValue) }
    }
    /// Seconds its supervisor waits before such a retry (`run --retry-delay`; 0 when absent).
    public var retryDelaySeconds: Int64 {
        get { integer(.retryDelaySeconds) ?? 0 }
        set { setInteger(.retryDelaySeconds, newValue == 0 ? nil : newValue) }
    }
    /// The ids of the flows that must have succeeded before this job starts (`run --after`).
    public var after: [String] {
        get { self[.after]?.arrayValue?.compactMap(\.stringValue) ?? [] }
        set { self[.after] = newValue.isEmpty ? nil : .array(newValue.map(JSON.string)) }
    }
    /// When the manifest was last written.
    public var updatedAt: Timestamp? {
        get { timestamp(.updatedAt) }
        set { setTimestamp(.updatedAt, newValue) }
    }
    /// The cancel request came from the controller's `request-cancel`: the controller ends the
    /// flow, no task settling does (spool-layout.md, "Controller commands").
    public var isCancelRequestOnly: Bool {
        get { self[.cancelRequestOnly]?.boolValue == true }
        set { self[.cancelRequestOnly] = newValue ? .bool(true) : nil }
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
