import ClawflowModel
import Glibc
import SystemPackage

/// The records of one flow while a change is made to them inside `Spool.mutate`.
public struct FlowChange: Sendable {
    /// The flow record; the spool reconciles it with the tasks and stamps the revision.
    public var flow: FlowRecord
    /// The linked tasks by id; add a record here to link a new task.
    public var tasks: [String: TaskRecord]
    /// The time of this change.
    public let now: Timestamp
    var notes: [[String: JSON]] = []

    /// Records an event that the record diff does not show (an ignored report, a repair).
    public mutating func log(_ event: [String: JSON]) { notes.append(event) }

    /// The linked tasks, oldest first.
    public var orderedTasks: [TaskRecord] {
        tasks.values.sorted { ($0.createdAt, $0.taskId) < ($1.createdAt, $1.taskId) }
    }
}

extension Spool {
    // MARK: - The one mutation path

    /// Changes a flow and its tasks: lock the flow → read the records → apply `body` and the
    /// rules → write the changed records durably → move the owner link if the lookup rule now
    /// picks another flow → append to events.jsonl → unlock (spool-layout.md, "Writing").
    public func mutate<T>(flow flowId: String, source: String, _ body: (inout FlowChange) throws(SpoolError) -> T) throws(SpoolError) -> (result: T, snapshot: FlowSnapshot) {
        let dirPath = flowPath(flowId)
        let dir = try openFlowDirectory(flowId)
        defer { dir.closeQuietly() }
        do { try dir.lock() } catch { throw SpoolError.io("Locking the flow", dirPath, error) }

        let before = try readFlow(in: dir, flowId: flowId)
        if let problem = before.problems.first {
            throw SpoolError(.invalidRecord, "Cannot change flow \(flowId) while one of its task files is unreadable: \(problem.message)", path: problem.path)
        }
        let now = Spool.now()
        var change = FlowChange(flow: before.flow, tasks: Dictionary(uniqueKeysWithValues: before.tasks.map { ($0.taskId, $0) }), now: now)
        let result = try body(&change)

        let tasksBefore = Dictionary(uniqueKeysWithValues: before.tasks.map { ($0.taskId, $0) })
        for task in change.tasks.values where tasksBefore[task.taskId] != task {
            do { _ = try TaskRecord(validating: task.fields) } catch {
                throw SpoolError(.invalidRecord, "The new version of task \(task.taskId) would be invalid: \(error.description)")
            }
        }
        let reconciled = Rules.reconcile(change.flow, tasks: Array(change.tasks.values), at: now)
        let flow = Rules.commit(reconciled, over: before.flow, at: now)
        do { _ = try FlowRecord(validating: flow.fields) } catch {
            throw SpoolError(.invalidRecord, "The new version of flow \(flowId) would be invalid: \(error.description)")
        }
        // Each task written here carries the flow revision it belongs to, so a crash between
        // the task file and the manifest is recognisable (spool-layout.md, "Interrupted writes").
        let changedTasks = change.orderedTasks.filter { tasksBefore[$0.taskId] != $0 }.map { task in
            var stamped = task
            stamped.setInteger("flowRevision", flow.revision)
            return stamped
        }
        for task in changedTasks { change.tasks[task.taskId] = task }
        let newTaskIds = changedTasks.map(\.taskId).filter { tasksBefore[$0] == nil }
        let events = Rules.events(flowBefore: before.flow, flowAfter: flow, tasksBefore: tasksBefore, tasksAfter: change.tasks) + change.notes
        let snapshot = FlowSnapshot(flow: flow, tasks: change.orderedTasks, problems: [])
        if changedTasks.isEmpty, flow == before.flow, events.isEmpty { return (result, snapshot) }

        let needsRoot = !newTaskIds.isEmpty || flow.isTerminal != before.flow.isTerminal
        if needsRoot { try lockRoot() }
        defer { if needsRoot { unlockRoot() } }
        try claimTaskIds(newTaskIds, flowId: flowId)
        let linkChange = flow.isTerminal != before.flow.isTerminal ? try prepareOwnerLink(for: flow) : nil

        if !changedTasks.isEmpty {
            let tasksPath = dirPath.appending(Layout.tasks)
            let tasksDir: FileDescriptor
            do { tasksDir = try dir.openDirectoryAt(Layout.tasks) } catch { throw SpoolError.io("Opening", tasksPath, error) }
            defer { tasksDir.closeQuietly() }
            for task in changedTasks {
                try DurableFile.replace(in: tasksDir, name: Layout.taskFile(task.taskId), bytes: task.fileBytes(), directoryPath: tasksPath, syncDirectory: false)
            }
            try DurableFile.sync(tasksDir, tasksPath)
        }
        if flow != before.flow {
            try DurableFile.replace(in: dir, name: Layout.manifest, bytes: flow.fileBytes(), directoryPath: dirPath)
        }
        if let linkChange { try commitOwnerLink(linkChange) }
        try appendEvents(events, in: dir, flowId: flowId, at: now, source: source)
        return (result, snapshot)
    }

    /// Creates a flow with its first tasks: built complete under tmp/, then renamed into
    /// flows/ with the owner link moved to it when the lookup rule picks it.
    public func create(flow draft: FlowRecord, tasks drafts: [TaskRecord], source: String) throws(SpoolError) -> FlowSnapshot {
        let flowId = draft.flowId
        let now = draft.createdAt
        let flow = Rules.reconcile(draft, tasks: drafts, at: now)
        let tasks = drafts.map { task in
            var stamped = task
            stamped.setInteger("flowRevision", flow.revision)
            return stamped
        }
        do { _ = try FlowRecord(validating: flow.fields) } catch {
            throw SpoolError(.invalidRecord, "The new flow would be invalid: \(error.description)")
        }
        for task in tasks {
            do { _ = try TaskRecord(validating: task.fields) } catch {
                throw SpoolError(.invalidRecord, "The new task \(task.taskId) would be invalid: \(error.description)")
            }
        }
        let stagingName = Layout.stagingName(flowId: flowId, pid: Spool.pid)
        let stagingPath = root.appending("tmp").appending(stagingName)
        do { try tmpFD.makeDirectoryAt(stagingName) } catch { throw SpoolError.io("Creating the staging directory", stagingPath, error) }
        do {
            let staging = try tmpFD.openDirectoryAt(stagingName)
            defer { staging.closeQuietly() }
            try staging.makeDirectoryAt(Layout.tasks)
            let tasksDir = try staging.openDirectoryAt(Layout.tasks)
            defer { tasksDir.closeQuietly() }
            for task in tasks {
                try DurableFile.create(in: tasksDir, name: Layout.taskFile(task.taskId), bytes: task.fileBytes(), directoryPath: stagingPath.appending(Layout.tasks))
            }
            try DurableFile.create(in: staging, name: Layout.manifest, bytes: flow.fileBytes(), directoryPath: stagingPath)
            let events = Rules.events(flowBefore: nil, flowAfter: flow, tasksBefore: [:], tasksAfter: Dictionary(uniqueKeysWithValues: tasks.map { ($0.taskId, $0) }))
            try DurableFile.create(in: staging, name: Layout.events, bytes: eventBytes(events, at: now, source: source), directoryPath: stagingPath)
            try tasksDir.synchronize()
            try staging.synchronize()
        } catch let error as SpoolError {
            removeStaging(stagingName)
            throw error
        } catch {
            removeStaging(stagingName)
            throw SpoolError.io("Building the new flow in", stagingPath, error as? Errno ?? .ioError)
        }

        try lockRoot()
        defer { unlockRoot() }
        do {
            try claimTaskIds(tasks.map(\.taskId), flowId: flowId)
            try addToOwnerIndex(flow)
        } catch {
            removeStaging(stagingName)
            throw error
        }
        let linkChange = try prepareOwnerLink(for: flow, isNew: true)
        do {
            try tmpFD.renameAt(stagingName, to: flowsFD, flowId, noReplace: true)
        } catch {
            throw SpoolError.io("Moving the new flow into place at", flowPath(flowId), error)
        }
        try DurableFile.sync(flowsFD, root.appending("flows"))
        if let linkChange { try commitOwnerLink(linkChange) }
        return FlowSnapshot(flow: flow, tasks: tasks.sorted { ($0.createdAt, $0.taskId) < ($1.createdAt, $1.taskId) }, problems: [])
    }

    /// Removes a staging directory and what it holds (two levels: files and tasks/).
    func removeStaging(_ name: String) {
        guard let staging = try? tmpFD.openDirectoryAt(name) else { return }
        if let tasksDir = try? staging.openDirectoryAt(Layout.tasks) {
            for e in (try? tasksDir.entries()) ?? [] { try? tasksDir.removeAt(e.name) }
            tasksDir.closeQuietly()
            try? staging.removeAt(Layout.tasks, directory: true)
        }
        for e in (try? staging.entries()) ?? [] { try? staging.removeAt(e.name) }
        staging.closeQuietly()
        try? tmpFD.removeAt(name, directory: true)
    }

    // MARK: - Locks

    /// Takes the spool-wide lock (flock on the root directory) for changes across flows.
    func lockRoot() throws(SpoolError) {
        do { try rootFD.lock() } catch { throw SpoolError.io("Locking the spool", root, error) }
    }

    func unlockRoot() { try? rootFD.unlock() }

    // MARK: - Event log

    func eventBytes(_ events: [[String: JSON]], at now: Timestamp, source: String) -> [UInt8] {
        var out: [UInt8] = []
        for var event in events {
            event["at"] = .string(now.description)
            event["source"] = .string(source)
            JSON.object(JSONObject(event)).write(into: &out, indent: 0, pretty: false)
            out.append(0x0A)
        }
        return out
    }

    func appendEvents(_ events: [[String: JSON]], in dir: FileDescriptor, flowId: String, at now: Timestamp, source: String) throws(SpoolError) {
        guard !events.isEmpty else { return }
        let path = flowPath(flowId).appending(Layout.events)
        do {
            let fd = try dir.openAt(Layout.events, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, permissions: 0o600)
            defer { fd.closeQuietly() }
            try fd.writeFully(eventBytes(events, at: now, source: source))
            try fd.synchronizeData()
        } catch {
            throw SpoolError.io("Appending to the event log", path, error)
        }
    }
}
