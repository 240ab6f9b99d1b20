import ClawflowModel
import Dispatch
import Glibc
import Synchronization
import SystemPackage

/// A task file that could not be read, reported beside the flow instead of being skipped silently.
public struct RecordProblem: Sendable, CustomStringConvertible {
    /// The file at fault.
    public var path: FilePath
    /// What is wrong with it.
    public var message: String
    /// The message.
    public var description: String { message }
}

/// A flow as read from disk: its manifest, its readable tasks, and the files that were not.
public struct FlowSnapshot: Sendable {
    /// The manifest.
    public var flow: FlowRecord
    /// The linked tasks, oldest first.
    public var tasks: [TaskRecord]
    /// Task files that could not be read.
    public var problems: [RecordProblem]
    /// Temp files in `tasks/` whose writer is gone (left by an interrupted write).
    public var debris: [FilePath] = []

    /// A snapshot of a flow.
    public init(flow: FlowRecord, tasks: [TaskRecord], problems: [RecordProblem], debris: [FilePath] = []) {
        self.flow = flow
        self.tasks = tasks
        self.problems = problems
        self.debris = debris
    }

    /// The readable task `taskId` of the flow, or nil.
    public func task(_ taskId: String) -> TaskRecord? { tasks.first { $0.taskId == taskId } }
}

extension Spool {
    /// Every flow id in `flows/`, oldest first (UUIDv7 order). Other names are skipped here and reported by fsck.
    public func flowIds() throws(SpoolError) -> [String] {
        do {
            return try flowsFD.entries().lazy.filter { Identifier.isValid($0.name) }.map(\.name).sorted()
        } catch {
            throw SpoolError.io("Listing", path(.flows), error)
        }
    }

    /// Whether `flows/<id>` exists.
    public func flowExists(_ flowId: String) -> Bool {
        Identifier.isValid(flowId) && (try? flowsFD.statusAt(flowId))?.kind == .directory
    }

    /// Reads a flow's manifest.
    public func readManifest(_ flowId: String) throws(SpoolError) -> FlowRecord {
        let dir: FileDescriptor
        do { dir = try flowsFD.openDirectoryAt(flowId) } catch {
            if error == .noSuchFileOrDirectory { throw notFound(flowId) }
            throw SpoolError.io("Opening the flow directory", flowPath(flowId), error)
        }
        defer { dir.closeQuietly() }
        return try readManifest(in: dir, flowId: flowId)
    }

    func readManifest(in dir: FileDescriptor, flowId: String, knownRegular: Bool = false) throws(SpoolError) -> FlowRecord {
        var path: FilePath { flowPath(flowId).appending(Layout.manifest) }
        let bytes: [UInt8]
        do { bytes = try DurableFile.read(in: dir, name: Layout.manifest, path: path, knownRegular: knownRegular, statIfTooLarge: true) } catch {
            if error.code == .notFound { throw notFound(flowId) }
            throw error
        }
        let object = try DurableFile.parseObject(bytes, path: path)
        let record: FlowRecord
        do { record = try FlowRecord(validating: object) } catch {
            throw SpoolError(.invalidRecord, "\(path) is not a valid flow record: \(error.description)", path: path, underlying: error)
        }
        guard record.flowId == flowId else {
            throw SpoolError(.invalidRecord, "\(path) names flow \(record.flowId), not the directory's \(flowId)", path: path)
        }
        return record
    }

    /// Reads one flow as stored: manifest and tasks. A bad manifest is an error; a bad task
    /// file is a problem in the snapshot. With `withDebris` the flow directory is listed too,
    /// for temp files of gone writers. Records no `lost`: readers outside the spool's own
    /// writers and checks use `flow(_:)`, which does (Liveness.swift).
    func readFlow(_ flowId: String, withDebris: Bool = false) throws(SpoolError) -> FlowSnapshot {
        let dir = try openFlowDirectory(flowId)
        defer { dir.closeQuietly() }
        // A shared lock: the manifest and the tasks as of one moment, never mid-change.
        do { try dir.lock(exclusive: false) } catch { throw SpoolError.io("Locking the flow for reading", flowPath(flowId), error) }
        guard withDebris else { return try readFlow(in: dir, flowId: flowId) }
        // Listed first: the listing says whether manifest.json is a regular file, so it is
        // read without an fstat (a filesystem that does not report types gets one).
        let entries = (try? dir.entries(rewind: false)) ?? []
        let manifestKind = entries.first { $0.name == Layout.manifest }?.kind
        var snap = try readFlow(in: dir, flowId: flowId, manifestKnownRegular: manifestKind == .regular)
        for entry in entries {
            if let pid = Layout.tempWriterPid(entry.name), !writerMayRun(pid, entry: entry.name, in: dir) {
                snap.debris.append(flowPath(flowId).appending(entry.name))
            }
        }
        return snap
    }

    /// A flow read without its lock, by the holder of the root lock or of its owner's (the
    /// lock order forbids a flow lock after those). Each file is read whole, old or new; only
    /// what changes under the lock held or never may be relied on: the owner key, whether the
    /// flow is terminal (under its owner's lock), the task ids and run ids (the whole spool's).
    func readFlowHoldingRootLock(_ flowId: String) throws(SpoolError) -> FlowSnapshot {
        let dir = try openFlowDirectory(flowId)
        defer { dir.closeQuietly() }
        return try readFlow(in: dir, flowId: flowId)
    }

    func readFlow(in dir: FileDescriptor, flowId: String, manifestKnownRegular: Bool = false) throws(SpoolError) -> FlowSnapshot {
        let flow = try readManifest(in: dir, flowId: flowId, knownRegular: manifestKnownRegular)
        let (tasks, problems, debris) = try readTasks(in: dir, flowId: flowId, ownerKey: flow.ownerKey)
        return FlowSnapshot(flow: flow, tasks: tasks, problems: problems, debris: debris)
    }

    func readTasks(in dir: FileDescriptor, flowId: String, ownerKey: String) throws(SpoolError) -> ([TaskRecord], [RecordProblem], [FilePath]) {
        var tasksPath: FilePath { self.tasksPath(flowId) }
        let tasksDir: FileDescriptor
        do { tasksDir = try dir.openDirectoryAt(Layout.tasks) } catch {
            if error == .noSuchFileOrDirectory { return ([], [], []) }
            throw SpoolError.io("Opening", tasksPath, error)
        }
        defer { tasksDir.closeQuietly() }
        let entries: [DirectoryEntry]
        do { entries = try tasksDir.entries(rewind: false) } catch { throw SpoolError.io("Listing", tasksPath, error) }
        var tasks: [TaskRecord] = []
        var problems: [RecordProblem] = []
        var debris: [FilePath] = []
        for entry in entries where entry.name.hasPrefix(".") {
            if let pid = Layout.tempWriterPid(entry.name), !writerMayRun(pid, entry: entry.name, in: tasksDir) {
                debris.append(tasksPath.appending(entry.name))
            }
        }
        for entry in entries where !entry.name.hasPrefix(".") && entry.name.hasSuffix(".json") {
            let taskId = String(entry.name.dropLast(5))
            guard Identifier.isValid(taskId) else {
                let path = tasksPath.appending(entry.name)
                problems.append(RecordProblem(path: path, message: "\(path): the name is not <task id>.json"))
                continue
            }
            do {
                tasks.append(
                    try readTask(
                        in: tasksDir, taskId: taskId, flowId: flowId, ownerKey: ownerKey, path: tasksPath.appending(entry.name),
                        knownRegular: entry.kind == .regular))
            } catch {
                problems.append(RecordProblem(path: tasksPath.appending(entry.name), message: error.message))
            }
        }
        if tasks.count > 1 {
            // The keys taken once: each is a field looked up, and a time parsed, per access.
            let keys = tasks.map { ($0.createdAt, $0.taskId) }
            tasks = tasks.indices.sorted { keys[$0] < keys[$1] }.map { tasks[$0] }
        }
        return (tasks, problems, debris)
    }

    func readTask(in tasksDir: FileDescriptor, taskId: String, flowId: String, ownerKey: String, path: @autoclosure () -> FilePath, knownRegular: Bool = false)
        throws(SpoolError) -> TaskRecord
    {
        let bytes = try DurableFile.read(in: tasksDir, name: Layout.taskFile(taskId), path: path(), knownRegular: knownRegular)
        let object = try DurableFile.parseObject(bytes, path: path())
        let task: TaskRecord
        do { task = try TaskRecord(validating: object) } catch {
            let path = path()
            throw SpoolError(.invalidRecord, "\(path) is not a valid task record: \(error.description)", path: path, underlying: error)
        }
        if task.taskId != taskId {
            let path = path()
            throw SpoolError(.invalidRecord, "\(path) names task \(task.taskId), not the file's \(taskId)", path: path)
        }
        if task.parentFlowId != flowId {
            let path = path()
            throw SpoolError(.invalidRecord, "\(path) names parent flow \(task.parentFlowId), not \(flowId)", path: path)
        }
        if task.ownerKey != ownerKey {
            let path = path()
            throw SpoolError(.invalidRecord, "\(path) has owner key \"\(sanitized(task.ownerKey))\", not its flow's \"\(sanitized(ownerKey))\"", path: path)
        }
        return task
    }

    /// Reads every flow as stored, newest first. Flows whose manifest cannot be read come back
    /// as errors, so a listing reports them and still shows the rest.
    func readAllFlows() throws(SpoolError) -> [Result<FlowSnapshot, SpoolError>] {
        try mapAllFlows { $0 }
    }

    /// Reads every flow as stored, newest first, and transforms each result; large spools are
    /// read (and transformed) by one thread per core, each flow under its shared lock as
    /// `readFlow` takes it. Readers outside the spool use `flows(_:)`, which records `lost`.
    func mapAllFlows<T: Sendable>(ids listed: [String]? = nil, withDebris: Bool = false, _ transform: @Sendable (Result<FlowSnapshot, SpoolError>) -> T)
        throws(SpoolError) -> [T]
    {
        var all: [String]
        if let listed { all = listed } else { all = try flowIds() }
        all.reverse()
        let ids = all
        return Spool.parallelMap(ids, minimum: 256) { transform(self.readResult($0, withDebris: withDebris)) }
    }

    /// `items.map(transform)`, run by one thread per core (at most 8) once there are at least
    /// `minimum` items; the order is kept. Threads take small chunks in turn, so one that
    /// drew slow items does not leave the others idle at the end.
    public static func parallelMap<S: Sendable, T: Sendable>(_ items: [S], minimum: Int, _ transform: @Sendable (S) -> T) -> [T] {
        let workers = items.count < minimum ? 1 : max(1, min(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), 8))
        if workers == 1 { return items.map(transform) }
        let chunk = max(16, items.count / (workers * 16))
        let chunks = (items.count + chunk - 1) / chunk
        let next = Atomic<Int>(0)
        let parts = Mutex<[[T]]>(Array(repeating: [], count: chunks))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                let c = next.wrappingAdd(1, ordering: .relaxed).oldValue
                if c >= chunks { return }
                let results = items[c * chunk..<min((c + 1) * chunk, items.count)].map(transform)
                parts.withLock { $0[c] = results }
            }
        }
        return parts.withLock { $0.flatMap { $0 } }
    }

    private func readResult(_ id: String, withDebris: Bool) -> Result<FlowSnapshot, SpoolError> {
        do { return .success(try readFlow(id, withDebris: withDebris)) } catch { return .failure(error) }
    }

    /// Opens `flows/<flowId>/` without following a symlink; anything but a directory there is "not found".
    func openFlowDirectory(_ flowId: String) throws(SpoolError) -> FileDescriptor {
        do { return try flowsFD.openDirectoryAt(flowId) } catch {
            if error == .noSuchFileOrDirectory || error == .notDirectory || error == .tooManySymbolicLinkLevels { throw notFound(flowId) }
            throw SpoolError.io("Opening the flow directory", flowPath(flowId), error)
        }
    }

    /// The error for a flow id that is not in the spool.
    func notFound(_ token: String) -> SpoolError { SpoolError.flowNotFound(token) }
}
