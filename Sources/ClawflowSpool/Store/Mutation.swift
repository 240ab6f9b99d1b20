import ClawflowModel
import Glibc
import SystemPackage

/// A flow to create with its first tasks (`Spool.create`).
struct FlowDraft {
    var flow: FlowRecord
    var tasks: [TaskRecord]
    var source: String
}

/// Something a change makes durable in its first barrier besides what it writes itself.
public enum AlsoFlushed {
    /// A file the caller keeps open (and closes).
    case file(FileDescriptor, FilePath)
    /// A directory opened for the change: closed after its flush, or when the change fails.
    case directory(FileDescriptor, FilePath)
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

extension Spool {
    // MARK: - Changing a flow

    /// Changes a flow and its tasks in one transaction: lock the flow → read the records →
    /// apply `body` and the rules → write the changed records durably → move the owner link
    /// if the lookup rule now picks another flow → append to events.jsonl → unlock
    /// (spool-layout.md, "Writing").
    /// Objects in `flushing` join the change's first barrier (a supervisor's new log, which
    /// must be durable before the flush of `tasks/` that makes its name durable; the queue
    /// directories of its job's move into `running/`).
    public func mutate<T>(
        flow flowId: String, source: String, flushing extra: [AlsoFlushed] = [], _ body: (inout FlowChange) throws(SpoolError) -> T
    ) throws(SpoolError) -> (
        result: T, snapshot: FlowSnapshot
    ) {
        let tx = Transaction(self)
        for item in extra {
            switch item {
            case .file(let fd, let path): tx.barrier.add(file: fd, path, owned: false)
            case .directory(let fd, let path): tx.barrier.add(directory: fd, path, owned: true)
            }
        }
        let changed = try change(flow: flowId, source: source, in: tx, body)
        try tx.end()
        return changed
    }

    /// The steps of `mutate` inside `tx`, up to its last barrier, which the caller's `end`
    /// makes (the drop box adds the drop's applied record to it first).
    func change<T>(flow flowId: String, source: String, in tx: Transaction, _ body: (inout FlowChange) throws(SpoolError) -> T) throws(SpoolError) -> (
        result: T, snapshot: FlowSnapshot
    ) {
        var dirPath: FilePath { flowPath(flowId) }  // built only where a message or a barrier needs it
        let dir = try tx.lock(flow: flowId)
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
            stamped.flowRevision = flow.revision
            return stamped
        }
        for task in changedTasks { change.tasks[task.taskId] = task }
        let newTaskIds = changedTasks.map(\.taskId).filter { tasksBefore[$0] == nil }
        let events = Rules.events(flowBefore: before.flow, flowAfter: flow, tasksBefore: tasksBefore, tasksAfter: change.tasks) + change.notes
        let snapshot = FlowSnapshot(flow: flow, tasks: change.orderedTasks, problems: [])
        if changedTasks.isEmpty, flow == before.flow, events.isEmpty { return (result, snapshot) }
        // The notifications this write makes, recorded with it (spool-layout.md, "Notifications").
        let deliveries = deliveries(
            for: Notify.notifications(flowBefore: before.flow, flowAfter: flow, tasksBefore: tasksBefore, tasksAfter: change.tasks), flow: flow,
            tasks: change.tasks, at: now)

        // The event log is opened first: one that is not a regular file stops the write here.
        let eventLog = events.isEmpty ? nil : try openEventLog(in: dir, flowId: flowId)
        if let eventLog { tx.hold(eventLog) }
        // What the flow shares with others: its new task ids and its owner's link, under the
        // owner's lock (the whole spool's when a task id may be claimed already). The lock is
        // shared by changes that leave the link as it is: new tasks, and the end of a flow
        // that the link does not name (jobs of one owner ending side by side); that check,
        // made under the lock, is the link's decision, and the link is not read again.
        let linkMayMove = flow.isTerminal != before.flow.isTerminal
        var linkStays = false
        if !newTaskIds.isEmpty || linkMayMove {
            let sharedIf: (() -> Bool)?
            if !linkMayMove {
                sharedIf = { true }
            } else if flow.isTerminal {
                sharedIf = {
                    linkStays = self.ownerLinkStays(whenEnding: flow)
                    return linkStays
                }
            } else {
                sharedIf = nil  // running again (`retry`): the link may move to it
            }
            try tx.lockOwners([flow.ownerKey], exclusive: newTaskIds.contains(where: taskIdMayBeClaimed), sharedIf: sharedIf)
        }
        // Barrier 1: index entries, the link intent and the new versions under temp names.
        try claimTaskIds(newTaskIds, flowId: flowId, in: tx)
        try indexRunIds(
            changedTasks.filter { tasksBefore[$0.taskId] == nil }, flowId: flowId, wholeSpoolLocked: tx.holdsSpoolLock, barrier: &tx.barrier)
        let linkChange = linkMayMove && !linkStays ? try prepareOwnerLink(for: flow, barrier: &tx.barrier) : nil
        var stagedTasks: [StagedReplacement] = []
        if !changedTasks.isEmpty {
            var tasksPath: FilePath { dirPath.appending(Layout.tasks) }
            let tasksDir: FileDescriptor
            do { tasksDir = try dir.openDirectoryAt(Layout.tasks) } catch { throw SpoolError.io("Opening", tasksPath, error) }
            tx.hold(tasksDir)
            for task in changedTasks {
                stagedTasks.append(try tx.stage(Spool.recordBytes(task, "task \(task.taskId)"), as: Layout.taskFile(task.taskId), in: tasksDir, at: tasksPath))
            }
        }
        let stagedManifest = flow == before.flow ? nil : try tx.stage(Spool.recordBytes(flow, "flow \(flowId)"), as: Layout.manifest, in: dir, at: dirPath)
        let stagedMarkers = try stageCancelMarkers(before: tasksBefore, after: changedTasks, in: tx)
        let stagedDeliveries = try stageDeliveries(deliveries, in: tx)
        try tx.flush()
        // Barrier 2: the task files, durable before the manifest moves (spool-layout.md,
        // "Interrupted writes"); where the filesystem keeps its changes in order, their
        // renames, made first, cannot be durable after the manifest's, and the last barrier
        // carries both.
        for staged in stagedTasks { try tx.commit(staged) }
        if !stagedTasks.isEmpty, !MetadataOrdering.keepsOrder(dir) { try tx.flush() }
        // The last barrier (the caller's `end`): cancel markers, which follow the task files
        // they derive from (spool-layout.md, "Cancel markers"), the manifest, the owner link
        // and the events, flushed together.
        for marker in stagedMarkers { try tx.commit(marker) }
        removeCancelMarkers(before: tasksBefore, after: changedTasks)
        if let stagedManifest { try tx.commit(stagedManifest) }
        // After the records they tell of. Their temp files are durable since barrier 1: a
        // crash that keeps a record and loses a delivery's rename leaves its temp file, which
        // the next deliverer renames into place (spool-layout.md, "Notifications").
        for staged in stagedDeliveries { try tx.commit(staged) }
        if let linkChange { try commitOwnerLinks([linkChange], barrier: &tx.barrier) }
        if let eventLog { try appendEvents(events, to: eventLog, flowId: flowId, at: now, source: source, barrier: &tx.barrier) }
        return (result, snapshot)
    }

    // MARK: - Creating flows

    /// Creates a flow with its first tasks: built complete under tmp/, then renamed into
    /// flows/ with the owner link moved to it when the lookup rule picks it.
    public func create(flow draft: FlowRecord, tasks drafts: [TaskRecord], source: String) throws(SpoolError) -> FlowSnapshot {
        let tx = Transaction(self)
        let created = try create([FlowDraft(flow: draft, tasks: drafts, source: source)], in: tx)[0].get()
        try tx.end()
        return created
    }

    /// Creates flows with their first tasks inside `tx` (spool-layout.md, "Writing"): each is
    /// built under tmp/ and renamed into flows/, and owner links move to those the lookup rule
    /// picks. All of them share the transaction's barriers — (1) staged records, index entries
    /// and link intents, with whatever the caller added before; (2) flows/, tmp/ and owners/
    /// after the renames, at the caller's `end` — so a batch costs about what one flow does.
    /// The link decision of a new flow reads the owner's other flows from flows/, so the
    /// drafts must have distinct owner keys (`OwnerKey.linkName`).
    /// Returns one result per draft, in order: a draft refused (invalid, or a task id taken
    /// meanwhile) does not stop the others; an I/O error stops the batch.
    func create(_ drafts: [FlowDraft], in tx: Transaction) throws(SpoolError) -> [Result<FlowSnapshot, SpoolError>] {
        precondition(Set(drafts.map { OwnerKey.linkName($0.flow.ownerKey) }).count == drafts.count, "one new flow per owner key in a batch")
        var results = [Result<FlowSnapshot, SpoolError>](repeating: .failure(SpoolError(.io, "not created")), count: drafts.count)
        var staged: [StagedFlow] = []
        func abandon(_ flows: [StagedFlow]) { for f in flows { removeStaging(f.stagingName) } }

        // 1. Build each flow complete under tmp/.
        for (i, draft) in drafts.enumerated() {
            let prepared: FlowSnapshot
            do { prepared = try Spool.prepareNewFlow(draft) } catch {
                results[i] = .failure(error)
                continue
            }
            let stagingName = Layout.stagingName(flowId: prepared.flow.flowId, pid: Spool.pid)
            do {
                try stage(prepared, source: draft.source, as: stagingName, in: tx)
            } catch {
                abandon(staged)
                removeStaging(stagingName)
                throw error
            }
            // Its notifications (a task created running or ended, with a hook to tell).
            let notes = Notify.notifications(
                flowBefore: nil, flowAfter: prepared.flow, tasksBefore: [:],
                tasksAfter: Dictionary(uniqueKeysWithValues: prepared.tasks.map { ($0.taskId, $0) }))
            let deliveries: [StagedReplacement]
            do {
                deliveries = try stageDeliveries(
                    self.deliveries(
                        for: notes, flow: prepared.flow, tasks: Dictionary(uniqueKeysWithValues: prepared.tasks.map { ($0.taskId, $0) }),
                        at: prepared.flow.createdAt), in: tx)
            } catch {
                abandon(staged)
                removeStaging(stagingName)
                throw error
            }
            staged.append(StagedFlow(index: i, stagingName: stagingName, snapshot: prepared, deliveries: deliveries))
        }
        guard !staged.isEmpty else { return results }

        // 2. Under the owners' locks (the whole spool's when a task id may be claimed already):
        // index entries and link intents, then barrier 1.
        try tx.lockOwners(
            staged.map(\.snapshot.flow.ownerKey), exclusive: staged.contains { $0.snapshot.tasks.contains { taskIdMayBeClaimed($0.taskId) } })
        var ready: [StagedFlow] = []
        for var flow in staged {
            do {
                try claimTaskIds(flow.snapshot.tasks.map(\.taskId), flowId: flow.snapshot.flow.flowId, in: tx)
                try indexRunIds(flow.snapshot.tasks, flowId: flow.snapshot.flow.flowId, wholeSpoolLocked: tx.holdsSpoolLock, barrier: &tx.barrier)
                try addToOwnerIndex(flow.snapshot.flow, barrier: &tx.barrier)
                flow.link = try prepareOwnerLink(for: flow.snapshot.flow, isNew: true, barrier: &tx.barrier)
                ready.append(flow)
            } catch  where error.code == .linkRefused {
                removeStaging(flow.stagingName)
                for d in flow.deliveries { d.discard() }
                results[flow.index] = .failure(error)
            } catch {
                abandon(staged)
                throw error
            }
        }
        do { try tx.flush() } catch {
            abandon(staged)
            throw error
        }

        // 3. Into flows/; 4. the owner links; both flushed by the caller's `end`.
        var links: [PendingOwnerLink] = []
        let tmpFD = try staging.openOrCreate(root: root)
        for (n, flow) in ready.enumerated() {
            do {
                try tmpFD.renameAt(flow.stagingName, to: flowsFD, flow.snapshot.flow.flowId, flags: .noReplace)
            } catch {
                abandon(Array(ready[n...]))
                if n > 0 { try DurableFile.sync(flowsFD, path(.flows)) }
                throw SpoolError.io("Moving the new flow into place at", flowPath(flow.snapshot.flow.flowId), error)
            }
            if let link = flow.link { links.append(link) }
            for d in flow.deliveries { try tx.commit(d) }  // after its flow, as in `change`
            results[flow.index] = .success(flow.snapshot)
        }
        // The links move before flows/ is flushed and both directories are flushed together:
        // a crash can then leave a link naming a flow whose rename was lost, which readers
        // and fsck treat like a marker (spool-layout.md, "Owner links").
        // tmp/ too: a rename between directories is durable only once both are flushed (on
        // an ext4 without a journal a power cut can otherwise keep the flow under both names,
        // and e2fsck then drops one of them).
        tx.barrier.add(directory: flowsFD, self.path(.flows))
        tx.barrier.add(directory: tmpFD, self.path(.staging))
        try commitOwnerLinks(links, barrier: &tx.barrier)
        return results
    }

    private struct StagedFlow {
        var index: Int
        var stagingName: String
        var snapshot: FlowSnapshot
        var deliveries: [StagedReplacement] = []
        var link: PendingOwnerLink?
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
            stamped.flowRevision = flow.revision
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

    /// Writes a new flow's directory under `tmp/<stagingName>`; its files and directories join the barrier of `tx`.
    private func stage(_ snapshot: FlowSnapshot, source: String, as stagingName: String, in tx: Transaction) throws(SpoolError) {
        var stagingPath: FilePath { path(.staging).appending(stagingName) }
        var tasksPath: FilePath { stagingPath.appending(Layout.tasks) }
        let tmpFD = try staging.openOrCreate(root: root)
        do { try tmpFD.makeDirectoryAt(stagingName) } catch { throw SpoolError.io("Creating the staging directory", stagingPath, error) }
        let staging: FileDescriptor
        do { staging = try tmpFD.openDirectoryAt(stagingName) } catch { throw SpoolError.io("Opening", stagingPath, error) }
        // Each directory joins the barrier once nothing more is made in it (a grouped
        // barrier closes a descriptor as it is added).
        var stagingOwned = true
        defer { if stagingOwned { staging.closeQuietly() } }
        let tasksDir: FileDescriptor
        do {
            try staging.makeDirectoryAt(Layout.tasks)
            tasksDir = try staging.openDirectoryAt(Layout.tasks)
        } catch {
            throw SpoolError.io("Creating", tasksPath, error)
        }
        do throws(SpoolError) {
            for task in snapshot.tasks {
                try tx.create(Spool.recordBytes(task, "task \(task.taskId)"), as: Layout.taskFile(task.taskId), in: tasksDir, at: tasksPath)
            }
        } catch {
            tasksDir.closeQuietly()
            throw error
        }
        tx.barrier.add(directory: tasksDir, tasksPath, owned: true)
        try tx.create(Spool.recordBytes(snapshot.flow, "flow \(snapshot.flow.flowId)"), as: Layout.manifest, in: staging, at: stagingPath)
        let now = snapshot.flow.createdAt
        let events = Rules.events(
            flowBefore: nil, flowAfter: snapshot.flow, tasksBefore: [:], tasksAfter: Dictionary(uniqueKeysWithValues: snapshot.tasks.map { ($0.taskId, $0) }))
        try tx.create(eventBytes(events, at: now, source: source), as: Layout.events, in: staging, at: stagingPath)
        stagingOwned = false
        tx.barrier.add(directory: staging, stagingPath, owned: true)
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
        do { fd = try dir.openAt(Layout.events, .writeOnly, options: [.append, .create, .noFollow, .nonBlocking], permissions: 0o600) } catch {
            if error == .tooManySymbolicLinkLevels || error == Errno(rawValue: ENXIO) {
                throw SpoolError(
                    .invalidRecord, "\(path) is not a regular file; clawflow appends only to regular files. Run clawflow fsck --repair to move it aside.",
                    path: path, errno: error)
            }
            throw SpoolError.io("Opening the event log", path, error)
        }
        guard let st = try? fd.status(), st.kind == .regular else {
            fd.closeQuietly()
            throw SpoolError(
                .invalidRecord, "\(path) is not a regular file; clawflow appends only to regular files. Run clawflow fsck --repair to move it aside.",
                path: path)
        }
        return fd
    }

    /// Appends event lines to a flow's events.jsonl through `log` (from `openEventLog`),
    /// which joins `barrier` (the caller flushes it, and closes `log` after).
    func appendEvents(_ events: [[String: JSON]], to log: FileDescriptor, flowId: String, at now: Timestamp, source: String, barrier: inout FlushSet)
        throws(SpoolError)
    {
        barrier.add(file: log, self.flowPath(flowId).appending(Layout.events), owned: false)
        do { try log.writeFully(eventBytes(events, at: now, source: source)) } catch {
            throw SpoolError.io("Appending to the event log", flowPath(flowId).appending(Layout.events), error)
        }
    }
}
