import ClawflowModel
import Glibc
import SystemPackage

/// A flow to create with its first tasks (`Spool.create`).
struct FlowDraft {
    var flow: FlowRecord
    var tasks: [TaskRecord]
    var source: String
}

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

/// What a caller adds to the barriers of one `Spool.mutate` (the drop box: a drop's claim, and
/// its applied record), so that its own writes cost no rounds of flushes of their own.
struct MutationExtras {
    /// Directories flushed in barrier 1, before any record of the change can be durable.
    var first: [(FileDescriptor, FilePath)] = []
    /// Called once the records are in place, before the last barrier, which it may add to.
    var beforeLast: ((inout FlushSet) throws(SpoolError) -> Void)?
}

extension Spool {
    // MARK: - The one mutation path

    /// Changes a flow and its tasks: lock the flow → read the records → apply `body` and the
    /// rules → write the changed records durably → move the owner link if the lookup rule now
    /// picks another flow → append to events.jsonl → unlock (spool-layout.md, "Writing").
    public func mutate<T>(flow flowId: String, source: String, _ body: (inout FlowChange) throws(SpoolError) -> T) throws(SpoolError) -> (result: T, snapshot: FlowSnapshot) {
        let (result, snapshot, _) = try mutate(flow: flowId, source: source, extras: MutationExtras(), body)
        return (result, snapshot)
    }

    /// `mutate` with `extras` joining its barriers. `wrote` is false when the change changed
    /// nothing, so that no barrier ran and `extras` were left alone.
    func mutate<T>(flow flowId: String, source: String, extras: MutationExtras, _ body: (inout FlowChange) throws(SpoolError) -> T) throws(SpoolError) -> (result: T, snapshot: FlowSnapshot, wrote: Bool) {
        var dirPath: FilePath { flowPath(flowId) }  // built only where a message or a barrier needs it
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
        if changedTasks.isEmpty, flow == before.flow, events.isEmpty { return (result, snapshot, false) }

        // The event log is opened first: one that is not a regular file stops the write here.
        var eventLog = events.isEmpty ? nil : try openEventLog(in: dir, flowId: flowId)
        defer { eventLog?.closeQuietly() }
        let needsRoot = !newTaskIds.isEmpty || flow.isTerminal != before.flow.isTerminal
        if needsRoot { try lockRoot() }
        defer { if needsRoot { unlockRoot() } }
        // Barrier 1: index entries, the link intent and the new versions under temp names.
        var barrier = FlushSet()
        defer { barrier.closeOwned() }
        try claimTaskIds(newTaskIds, flowId: flowId, barrier: &barrier)
        try indexRunIds(changedTasks.filter { tasksBefore[$0.taskId] == nil }, flowId: flowId, barrier: &barrier)
        let linkChange = flow.isTerminal != before.flow.isTerminal ? try prepareOwnerLink(for: flow, barrier: &barrier) : nil
        var tasksPath: FilePath { dirPath.appending(Layout.tasks) }
        var tasksDir: FileDescriptor?
        defer { tasksDir?.closeQuietly() }
        var stagedTasks: [StagedReplacement] = []
        var stagedManifest: StagedReplacement?
        var stagedMarkers: [StagedReplacement] = []
        func discardAll() {
            for staged in stagedTasks + stagedMarkers { staged.discard() }
            stagedManifest?.discard()
        }
        do throws(SpoolError) {
            if !changedTasks.isEmpty {
                let fd: FileDescriptor
                do { fd = try dir.openDirectoryAt(Layout.tasks) } catch { throw SpoolError.io("Opening", tasksPath, error) }
                tasksDir = fd
                for task in changedTasks {
                    stagedTasks.append(try DurableFile.stageReplacement(in: fd, name: Layout.taskFile(task.taskId), bytes: Spool.recordBytes(task, "task \(task.taskId)"), directoryPath: tasksPath, barrier: &barrier))
                }
            }
            if flow != before.flow {
                stagedManifest = try DurableFile.stageReplacement(in: dir, name: Layout.manifest, bytes: Spool.recordBytes(flow, "flow \(flowId)"), directoryPath: dirPath, barrier: &barrier)
            }
            stagedMarkers = try stageCancelMarkers(before: tasksBefore, after: changedTasks, barrier: &barrier)
            for (fd, path) in extras.first { barrier.add(directory: fd, path) }
            try barrier.flush()
        } catch {
            discardAll()
            throw error
        }
        // The task files first, made durable before the manifest moves (spool-layout.md,
        // "Interrupted writes"); then the manifest, the owner link and the events, flushed together.
        for (n, staged) in stagedTasks.enumerated() {
            do { try staged.commit() } catch {
                for rest in stagedTasks[(n + 1)...] + stagedMarkers { rest.discard() }
                stagedManifest?.discard()
                throw error
            }
        }
        if let tasksDir { try DurableFile.sync(tasksDir, tasksPath) }
        var last = FlushSet()
        defer { last.closeOwned() }
        // Cancel markers follow the task files they derive from (spool-layout.md, "Cancel markers").
        for marker in stagedMarkers { try marker.commit() }
        if !stagedMarkers.isEmpty, let markers = cancelMarkers.fd { last.add(directory: markers, self.root.appending(Layout.cancelDirectory)) }
        removeCancelMarkers(before: tasksBefore, after: changedTasks)
        if let stagedManifest {
            try stagedManifest.commit()
            last.add(directory: dir, dirPath)
        }
        if let linkChange { try commitOwnerLinks([linkChange], barrier: &last) }
        if let log = eventLog {
            eventLog = nil  // the barrier owns it now
            try appendEvents(events, to: log, flowId: flowId, at: now, source: source, barrier: &last)
        }
        try extras.beforeLast?(&last)
        try last.flush()
        return (result, snapshot, true)
    }

    /// Creates a flow with its first tasks: built complete under tmp/, then renamed into
    /// flows/ with the owner link moved to it when the lookup rule picks it.
    public func create(flow draft: FlowRecord, tasks drafts: [TaskRecord], source: String) throws(SpoolError) -> FlowSnapshot {
        try create([FlowDraft(flow: draft, tasks: drafts, source: source)])[0].get()
    }

    /// Creates flows with their first tasks (spool-layout.md, "Writing"): each is built under
    /// tmp/ and renamed into flows/, and owner links move to those the lookup rule picks.
    /// All of them share two barriers — (1) staged records, index entries and link intents,
    /// (2) flows/ and owners/ after the renames — so a batch costs about what one flow does.
    /// `alsoFlush` joins barrier 1: directories in which the caller made symlinks (the
    /// applied records of drops, which must be durable before their flows are).
    /// Returns one result per draft, in order: a draft refused (invalid, or a task id taken
    /// meanwhile) does not stop the others; an I/O error stops the batch.
    func create(_ drafts: [FlowDraft], alsoFlush: [(FileDescriptor, FilePath)] = []) throws(SpoolError) -> [Result<FlowSnapshot, SpoolError>] {
        var results: [Result<FlowSnapshot, SpoolError>] = []
        var rest = drafts[...]
        // The link decision of a new flow reads the owner's other flows from flows/, so two new
        // flows of one owner never share a batch: the second starts the next batch. A batch
        // holds about six descriptors per flow until its first barrier, so it is capped.
        while !rest.isEmpty {
            var names = Set<String>()
            let batch = rest.prefix(Spool.createBatchLimit).prefix { names.insert(OwnerKey.linkName($0.flow.ownerKey)).inserted }
            // Every batch flushes `alsoFlush`: a batch that created nothing flushed nothing.
            results += try createBatch(Array(batch), alsoFlush: alsoFlush)
            rest = rest.dropFirst(batch.count)
        }
        return results
    }

    /// Most flows created under one set of barriers (about 6 open descriptors each).
    static let createBatchLimit = 64

    private struct StagedFlow {
        var index: Int
        var stagingName: String
        var snapshot: FlowSnapshot
        var link: PendingOwnerLink?
    }

    private func createBatch(_ drafts: [FlowDraft], alsoFlush: [(FileDescriptor, FilePath)]) throws(SpoolError) -> [Result<FlowSnapshot, SpoolError>] {
        var results = [Result<FlowSnapshot, SpoolError>](repeating: .failure(SpoolError(.io, "not created")), count: drafts.count)
        var staged: [StagedFlow] = []
        var barrier = FlushSet()
        defer { barrier.closeOwned() }
        func abandon(_ flows: [StagedFlow]) { for f in flows { removeStaging(f.stagingName) } }

        // 1. Build each flow complete under tmp/ (written, flushed by barrier 1).
        for (i, draft) in drafts.enumerated() {
            let prepared: FlowSnapshot
            do { prepared = try Spool.prepareNewFlow(draft) } catch {
                results[i] = .failure(error)
                continue
            }
            let stagingName = Layout.stagingName(flowId: prepared.flow.flowId, pid: Spool.pid)
            do {
                try stage(prepared, source: draft.source, as: stagingName, barrier: &barrier)
            } catch {
                abandon(staged)
                removeStaging(stagingName)
                throw error
            }
            staged.append(StagedFlow(index: i, stagingName: stagingName, snapshot: prepared))
        }
        guard !staged.isEmpty else { return results }

        // 2. Under the root lock: index entries and link intents, then barrier 1.
        try lockRoot()
        defer { unlockRoot() }
        var ready: [StagedFlow] = []
        for var flow in staged {
            do {
                try claimTaskIds(flow.snapshot.tasks.map(\.taskId), flowId: flow.snapshot.flow.flowId, barrier: &barrier)
                try indexRunIds(flow.snapshot.tasks, flowId: flow.snapshot.flow.flowId, barrier: &barrier)
                try addToOwnerIndex(flow.snapshot.flow, barrier: &barrier)
                flow.link = try prepareOwnerLink(for: flow.snapshot.flow, isNew: true, barrier: &barrier)
                ready.append(flow)
            } catch where error.code == .linkRefused {
                removeStaging(flow.stagingName)
                results[flow.index] = .failure(error)
            } catch {
                abandon(staged)
                throw error
            }
        }
        for (fd, path) in alsoFlush { barrier.add(directory: fd, path) }
        if !alsoFlush.isEmpty { barrier.addSymlinks() }
        do { try barrier.flush() } catch {
            abandon(staged)
            throw error
        }

        // 3. Into flows/, then barrier 2; 4. the owner links, then barrier 3.
        var links: [PendingOwnerLink] = []
        let tmpFD = try staging.openOrCreate(root: root)
        for (n, flow) in ready.enumerated() {
            do {
                try tmpFD.renameAt(flow.stagingName, to: flowsFD, flow.snapshot.flow.flowId, noReplace: true)
            } catch {
                abandon(Array(ready[n...]))
                if n > 0 { try DurableFile.sync(flowsFD, root.appending("flows")) }
                throw SpoolError.io("Moving the new flow into place at", flowPath(flow.snapshot.flow.flowId), error)
            }
            if let link = flow.link { links.append(link) }
            results[flow.index] = .success(flow.snapshot)
        }
        // The links move before flows/ is flushed and both directories are flushed together:
        // a crash can then leave a link naming a flow whose rename was lost, which readers
        // and fsck treat like a marker (spool-layout.md, "Owner links").
        // tmp/ too: a rename between directories is durable only once both are flushed (on
        // an ext4 without a journal a power cut can otherwise keep the flow under both names,
        // and e2fsck then drops one of them).
        var last = FlushSet()
        last.add(directory: flowsFD, self.root.appending("flows"))
        last.add(directory: tmpFD, self.root.appending("tmp"))
        try commitOwnerLinks(links, barrier: &last)
        try last.flush()
        return results
    }

    /// Why `record` could not be written as a record clawflow reads back (over the size
    /// limit, or nested past the parser's depth), or nil when it can.
    static func unreadableProblem(_ record: some Record, bytes: [UInt8]) -> String? {
        if bytes.count > Layout.recordLimit {
            return "would be \(bytes.count) bytes, over the \(Layout.recordLimit)-byte limit of a record that clawflow reads back"
        }
        let level = JSON.object(record.fields).deepestLevel()
        if level > JSON.maxDepth {
            return "would nest values \(level) levels deep, past the \(JSON.maxDepth) levels clawflow reads back"
        }
        return nil
    }

    /// The bytes of a record about to be written, refused (nothing is written) when clawflow
    /// could not read them back: what is accepted never becomes unreadable.
    static func recordBytes(_ record: some Record, _ what: @autoclosure () -> String) throws(SpoolError) -> [UInt8] {
        let bytes = record.fileBytes()
        if let problem = unreadableProblem(record, bytes: bytes) {
            throw SpoolError(.invalidRecord, "The new version of \(what()) \(problem); nothing was written. Shorten or flatten the largest fields.")
        }
        return bytes
    }

    /// The records of a new flow as they will be written: reconciled, stamped with the flow
    /// revision, validated.
    private static func prepareNewFlow(_ draft: FlowDraft) throws(SpoolError) -> FlowSnapshot {
        let flow = Rules.reconcile(draft.flow, tasks: draft.tasks, at: draft.flow.createdAt)
        let tasks = draft.tasks.map { task in
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
        return FlowSnapshot(flow: flow, tasks: tasks.sorted { ($0.createdAt, $0.taskId) < ($1.createdAt, $1.taskId) }, problems: [])
    }

    /// Writes a new flow's directory under `tmp/<stagingName>`; its files and directories join `barrier`.
    private func stage(_ snapshot: FlowSnapshot, source: String, as stagingName: String, barrier: inout FlushSet) throws(SpoolError) {
        var stagingPath: FilePath { root.appending("tmp").appending(stagingName) }
        var tasksPath: FilePath { stagingPath.appending(Layout.tasks) }
        let tmpFD = try staging.openOrCreate(root: root)
        do { try tmpFD.makeDirectoryAt(stagingName) } catch { throw SpoolError.io("Creating the staging directory", stagingPath, error) }
        let staging: FileDescriptor
        do { staging = try tmpFD.openDirectoryAt(stagingName) } catch { throw SpoolError.io("Opening", stagingPath, error) }
        barrier.add(directory: staging, stagingPath, owned: true)
        let tasksDir: FileDescriptor
        do {
            try staging.makeDirectoryAt(Layout.tasks)
            tasksDir = try staging.openDirectoryAt(Layout.tasks)
        } catch {
            throw SpoolError.io("Creating", tasksPath, error)
        }
        barrier.add(directory: tasksDir, tasksPath, owned: true)
        for task in snapshot.tasks {
            try DurableFile.create(in: tasksDir, name: Layout.taskFile(task.taskId), bytes: Spool.recordBytes(task, "task \(task.taskId)"), directoryPath: tasksPath, barrier: &barrier)
        }
        try DurableFile.create(in: staging, name: Layout.manifest, bytes: Spool.recordBytes(snapshot.flow, "flow \(snapshot.flow.flowId)"), directoryPath: stagingPath, barrier: &barrier)
        let now = snapshot.flow.createdAt
        let events = Rules.events(flowBefore: nil, flowAfter: snapshot.flow, tasksBefore: [:], tasksAfter: Dictionary(uniqueKeysWithValues: snapshot.tasks.map { ($0.taskId, $0) }))
        try DurableFile.create(in: staging, name: Layout.events, bytes: eventBytes(events, at: now, source: source), directoryPath: stagingPath, barrier: &barrier)
    }

    /// Removes a staging directory and what it holds (two levels: files and tasks/).
    func removeStaging(_ name: String) {
        guard let tmpFD = staging.fd, let staging = try? tmpFD.openDirectoryAt(name) else { return }
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

    /// Opens a flow's events.jsonl for appending (created when missing) without blocking on
    /// a FIFO or following a symlink; anything but a regular file there is refused, before
    /// the write that would append to it has changed anything.
    func openEventLog(in dir: FileDescriptor, flowId: String) throws(SpoolError) -> FileDescriptor {
        var path: FilePath { flowPath(flowId).appending(Layout.events) }
        let fd: FileDescriptor
        do { fd = try dir.openAt(Layout.events, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK, permissions: 0o600) } catch {
            if error == .tooManySymbolicLinkLevels || error == Errno(rawValue: ENXIO) {
                throw SpoolError(.invalidRecord, "\(path) is not a regular file; clawflow appends only to regular files. Run clawflow fsck --repair to move it aside.", path: path, errno: error)
            }
            throw SpoolError.io("Opening the event log", path, error)
        }
        guard let st = try? fd.status(), st.kind == .regular else {
            fd.closeQuietly()
            throw SpoolError(.invalidRecord, "\(path) is not a regular file; clawflow appends only to regular files. Run clawflow fsck --repair to move it aside.", path: path)
        }
        return fd
    }

    /// Appends event lines to a flow's events.jsonl through `log` (from `openEventLog`),
    /// which joins `barrier` (the caller flushes it; the barrier closes it).
    func appendEvents(_ events: [[String: JSON]], to log: FileDescriptor, flowId: String, at now: Timestamp, source: String, barrier: inout FlushSet) throws(SpoolError) {
        barrier.add(file: log, self.flowPath(flowId).appending(Layout.events), owned: true)
        do { try log.writeFully(eventBytes(events, at: now, source: source)) } catch {
            throw SpoolError.io("Appending to the event log", flowPath(flowId).appending(Layout.events), error)
        }
    }
}
