import ClawflowModel
import Glibc
import SystemPackage

/// A queue's settings (`queues/<name>/queue.json`, spool-layout.md, "Queues").
public struct QueueSettings: Sendable, Equatable {
    /// The queue's name.
    public var name: String
    /// How many of its jobs may hold a slot at once; nil: no limit.
    public var slots: Int64?

    /// Settings of queue `name`.
    public init(name: String, slots: Int64?) {
        self.name = name
        self.slots = slots
    }

    /// The settings file's bytes.
    func fileBytes() -> [UInt8] {
        var object: [String: JSON] = ["schema": .int(1), "name": .string(name)]
        object["slots"] = slots.map(JSON.int) ?? .null
        return Array((JSON.object(JSONObject(object)).pretty() + "\n").utf8)
    }
}

/// A queue's jobs as its entries name them, in start order.
public struct QueueJobs: Sendable {
    /// Flows holding a slot (`running/`).
    public var running: [String]
    /// Flows waiting for a slot (`waiting/`), the next to start first.
    public var waiting: [String]
    /// Jobs as listed.
    public init(running: [String], waiting: [String]) {
        self.running = running
        self.waiting = waiting
    }
}

/// Queue names: `[a-z0-9_-]{1,32}`, as runtimes.
public enum QueueName {
    /// Whether `name` can name a queue.
    public static func isValid(_ name: String) -> Bool { RuntimeName.isValid(name) }
}

/// A queue's directory, locked (flock on `queues/<name>/`) for as long as the value lives:
/// the slot hand-off and the enqueueing of new jobs happen only under this lock, so no job
/// is started twice and no entry is half made when it is read.
public final class LockedQueue {
    /// The queue's name.
    public let name: String
    let spool: Spool
    let directory: FileDescriptor
    let waitingFD: FileDescriptor
    let runningFD: FileDescriptor

    init(spool: Spool, name: String, directory: FileDescriptor, waiting: FileDescriptor, running: FileDescriptor) {
        self.spool = spool
        self.name = name
        self.directory = directory
        waitingFD = waiting
        runningFD = running
    }

    deinit {
        waitingFD.closeQuietly()
        runningFD.closeQuietly()
        directory.closeQuietly()  // closing drops the flock
    }

    var path: FilePath { SpoolDirectory.queues.path(in: spool.root).appending(name) }

    /// The queue's settings; a queue never set has no slot limit.
    public func settings() throws(SpoolError) -> QueueSettings {
        try spool.queueSettings(name, in: directory)
    }

    /// Replaces the queue's settings (durable when this returns).
    public func setSettings(_ settings: QueueSettings) throws(SpoolError) {
        try DurableFile.replace(in: directory, name: Layout.queueSettings, bytes: settings.fileBytes(), directoryPath: path)
    }

    /// The entries of the queue, in start order.
    public func jobs() throws(SpoolError) -> QueueJobs {
        func names(_ fd: FileDescriptor, _ sub: String) throws(SpoolError) -> [String] {
            do { return try fd.entries().map(\.name).filter { !$0.hasPrefix(".") }.sorted() } catch {
                throw SpoolError.io("Listing", path.appending(sub), error)
            }
        }
        let running = try names(runningFD, Layout.queueRunning).filter(Identifier.isValid)
        let waiting = try names(waitingFD, Layout.queueWaiting).compactMap(Layout.flowId(fromWaitingEntry:))
        return QueueJobs(running: running, waiting: waiting)
    }

    /// Creates `flow` with its tasks and its entry in `waiting/`, durable together (the entry
    /// first: it is read only under this lock, which is held until the flow exists).
    public func enqueue(_ flow: FlowRecord, tasks: [TaskRecord], source: String) throws(SpoolError) -> FlowSnapshot {
        let tx = Transaction(spool)
        let entry = Layout.waitingEntry(flowId: flow.flowId, priority: flow.priority)
        try tx.create([], as: entry, in: waitingFD, at: self.path.appending(Layout.queueWaiting))
        let created: FlowSnapshot
        do {
            created = try spool.create([FlowDraft(flow: flow, tasks: tasks, source: source)], in: tx)[0].get()
            try tx.end()
        } catch {
            try? waitingFD.removeAt(entry)
            throw error
        }
        return created
    }

    /// Adds a waiting entry for the existing flow `flowId` (durable when this returns), for
    /// a job put back in the queue (`retry`); the caller removes it (`removeWaiting`) when
    /// the flow's change fails. An entry of a flow that is terminal is dropped by the next
    /// hand-off, so a crash between the two writes leaves nothing behind.
    public func addWaiting(flowId: String, priority: Int64) throws(SpoolError) {
        let tx = Transaction(nil)
        try tx.create([], as: Layout.waitingEntry(flowId: flowId, priority: priority), in: waitingFD, at: self.path.appending(Layout.queueWaiting))
        try tx.end()
    }

    /// Removes the waiting entry `addWaiting` made.
    public func removeWaiting(flowId: String, priority: Int64) {
        try? waitingFD.removeAt(Layout.waitingEntry(flowId: flowId, priority: priority))
    }

    /// The slot hand-off ("start the next waiting jobs while slots are free"), bounded by the
    /// queue's entries: entries of flows that ended (or were never made) are removed, a job
    /// whose supervisor died before its command started waits again (`Spool.settled`), and
    /// waiting jobs are moved to `running/` and handed to `start` in order while fewer than
    /// `slots` hold one. A job holds a slot from its move to `running/` until its flow ends.
    /// `start` forks the job's supervisor and records it (`Runner`); a job it could not
    /// start stays in `running/` and is started by the next hand-off. Returns the jobs after.
    @discardableResult
    public func handOff(start: (FlowSnapshot) throws(SpoolError) -> Void) throws(SpoolError) -> QueueJobs {
        let limit = try settings().slots
        var jobs = try jobs()
        var running: [String] = []
        for id in jobs.running {
            guard let snap = try live(id, entry: id, in: runningFD) else { continue }
            running.append(id)
            if LockedQueue.needsStart(snap) { try start(snap) }
        }
        var waiting: [String] = []
        for id in jobs.waiting {
            guard let snap = try live(id, entry: nil, in: waitingFD) else { continue }
            let entry = Layout.waitingEntry(flowId: id, priority: snap.flow.priority)
            // A job run --after other flows waits, without a slot, until they all succeeded;
            // when one ended otherwise it is cancelled (and its entry goes).
            switch spool.dependencies(of: snap.flow) {
            case .met: break
            case .pending:
                waiting.append(id)
                continue
            case .failed(let summary):
                try spool.cancelUnmet(id, summary: summary)
                try? waitingFD.removeAt(entry)
                continue
            }
            if let limit, running.count >= limit, LockedQueue.needsStart(snap) {
                waiting.append(id)
                continue
            }
            do { try waitingFD.renameAt(entry, to: runningFD, id) } catch {
                throw SpoolError.io("Moving the job to", path.appending(Layout.queueRunning).appending(id), error)
            }
            // Durable before the job starts, as every rename of the spool.
            try DurableFile.sync(runningFD, path.appending(Layout.queueRunning))
            try DurableFile.sync(waitingFD, path.appending(Layout.queueWaiting))
            running.append(id)
            if LockedQueue.needsStart(snap) { try start(snap) }
        }
        jobs = QueueJobs(running: running, waiting: waiting)
        return jobs
    }

    /// The flow of an entry as it is now (settled), or nil after removing the entry when the
    /// flow ended or does not exist. A flow asked to cancel whose command never started is
    /// recorded cancelled here (a cancel interrupted between its two writes).
    func live(_ id: String, entry: String?, in dir: FileDescriptor) throws(SpoolError) -> FlowSnapshot? {
        var snap: FlowSnapshot?
        do { snap = try spool.flow(id) } catch  where error.code == .notFound { snap = nil }
        if var s = snap, !s.flow.isTerminal, s.flow.cancelRequestedAt != nil, LockedQueue.unstarted(s) != nil {
            s = try spool.stopCommands(flowId: id, only: Set(s.tasks.filter { $0.isCommand && $0.status.isActive }.map(\.taskId)), grace: 0)
            snap = s
        }
        if let s = snap, !s.flow.isTerminal { return s }
        let name = entry ?? snap.map { Layout.waitingEntry(flowId: id, priority: $0.flow.priority) }
        if let name { try? dir.removeAt(name) }
        if snap == nil, entry == nil {
            // A waiting entry of a flow that was never made: its name's priority is unknown.
            for e in (try? dir.entries()) ?? [] where Layout.flowId(fromWaitingEntry: e.name) == id { try? dir.removeAt(e.name) }
        }
        return nil
    }

    /// The command task of a live flow that no supervisor has taken yet, if any.
    static func unstarted(_ snap: FlowSnapshot) -> TaskRecord? {
        snap.tasks.first { $0.isCommand && $0.status == .queued && $0.supervisorPid == nil && $0.pid == nil }
    }

    /// Whether a job's supervisor must be started: a queued command task no supervisor has taken.
    public static func needsStart(_ snap: FlowSnapshot) -> Bool {
        !snap.flow.isTerminal && snap.flow.cancelRequestedAt == nil && unstarted(snap) != nil
    }
}

/// Where the flows a job runs after (`run --after`) stand.
public enum Dependencies: Sendable, Equatable {
    /// Every one succeeded (or there are none).
    case met
    /// These have not ended yet.
    case pending([String])
    /// One ended without succeeding: why the job will not run.
    case failed(String)
}

extension Spool {
    /// Where the flows `flow` runs after stand now (each read settled). A flow that no longer
    /// exists counts as not succeeded.
    public func dependencies(of flow: FlowRecord) -> Dependencies {
        var pending: [String] = []
        for id in flow.after {
            guard let other = try? self.flow(id).flow else { return .failed("flow \(id), which it runs after, does not exist") }
            if other.status == .succeeded { continue }
            if other.isTerminal { return .failed("flow \(id), which it runs after, ended \(other.status.rawValue)") }
            pending.append(id)
        }
        return pending.isEmpty ? .met : .pending(pending)
    }

    /// Cancels a job that waited for a flow that did not succeed, in one write: the cancel
    /// request, its active tasks `cancelled` with `summary` as their error, and `summary` as
    /// the flow's `blockedSummary`.
    func cancelUnmet(_ flowId: String, summary: String) throws(SpoolError) {
        _ = try mutate(flow: flowId, source: "runner") { (change) throws(SpoolError) in
            guard !change.flow.isTerminal else { return }
            if change.flow.cancelRequestedAt == nil { change.flow.cancelRequestedAt = change.now }
            change.flow.isCancelRequestOnly = false
            change.flow.blockedSummary = "not run: " + summary
            for var task in change.tasks.values where task.status.isActive {
                if task.cancelRequestedAt == nil { task.cancelRequestedAt = change.now }
                _ = Rules.apply(TaskUpdate(status: .cancelled, [.error: .string("not run: " + summary)]), to: &task, at: change.now)
                change.tasks[task.taskId] = task
            }
        }
    }

    /// Opens queue `name` (making its directories, durably, on first use) and locks it; the
    /// lock is held until the returned value is released. Take it before any flow or spool
    /// lock (a transaction's), never while holding one.
    public func lockQueue(_ name: String) throws(SpoolError) -> LockedQueue {
        guard QueueName.isValid(name) else { throw SpoolError(.usage, "Invalid queue name \"\(sanitized(name))\"; it must match [a-z0-9_-]{1,32}.") }
        let relative = SpoolDirectory.queues.rawValue + "/" + name
        var path: FilePath { root.appending(relative) }
        if (try? rootFD.statusAt(relative + "/" + Layout.queueRunning)) == nil {
            for sub in [Layout.queueWaiting, Layout.queueRunning] {
                try Spool.makeLayoutDirectory(relative + "/" + sub, in: rootFD, root: root)
            }
        }
        let dir: FileDescriptor
        do { dir = try rootFD.openDirectoryAt(relative) } catch { throw SpoolError.io("Opening the queue", path, error) }
        do { try dir.lock() } catch {
            dir.closeQuietly()
            throw SpoolError.io("Locking the queue", path, error)
        }
        let waiting: FileDescriptor
        let running: FileDescriptor
        do { waiting = try dir.openDirectoryAt(Layout.queueWaiting) } catch {
            dir.closeQuietly()
            throw SpoolError.io("Opening", path.appending(Layout.queueWaiting), error)
        }
        do { running = try dir.openDirectoryAt(Layout.queueRunning) } catch {
            waiting.closeQuietly()
            dir.closeQuietly()
            throw SpoolError.io("Opening", path.appending(Layout.queueRunning), error)
        }
        return LockedQueue(spool: self, name: name, directory: dir, waiting: waiting, running: running)
    }

    /// The names of the queues that have a directory, sorted.
    public func queueNames() -> [String] {
        guard let dir = try? rootFD.openDirectoryAt(SpoolDirectory.queues.rawValue) else { return [] }
        defer { dir.closeQuietly() }
        return ((try? dir.entries()) ?? []).map(\.name).filter(QueueName.isValid).sorted()
    }

    /// The names of the queues with a job in them, waiting or holding a slot (a readdir or
    /// two per queue; no lock): a job holding a slot may need its supervisor started again.
    public func queuesWithJobs() -> [String] {
        queueNames().filter { name in
            [Layout.queueWaiting, Layout.queueRunning].contains { sub in
                guard let dir = try? rootFD.openDirectoryAt(SpoolDirectory.queues.rawValue + "/" + name + "/" + sub) else { return false }
                defer { dir.closeQuietly() }
                return ((try? dir.entries()) ?? []).contains { !$0.name.hasPrefix(".") }
            }
        }
    }

    /// A queue's settings read without its lock (a whole file, old or new).
    public func queueSettings(_ name: String) throws(SpoolError) -> QueueSettings {
        guard let dir = try? rootFD.openDirectoryAt(SpoolDirectory.queues.rawValue + "/" + name) else { return QueueSettings(name: name, slots: nil) }
        defer { dir.closeQuietly() }
        return try queueSettings(name, in: dir)
    }

    func queueSettings(_ name: String, in dir: FileDescriptor) throws(SpoolError) -> QueueSettings {
        let path = SpoolDirectory.queues.path(in: root).appending(name).appending(Layout.queueSettings)
        let bytes: [UInt8]
        do { bytes = try DurableFile.read(in: dir, name: Layout.queueSettings, path: path) } catch {
            if error.code == .notFound { return QueueSettings(name: name, slots: nil) }
            throw error
        }
        let object = try DurableFile.parseObject(bytes, path: path)
        guard let slotsValue = object["slots"] else { return QueueSettings(name: name, slots: nil) }
        if slotsValue.isNull { return QueueSettings(name: name, slots: nil) }
        guard let slots = slotsValue.intValue, slots >= 1 else {
            throw SpoolError(.invalidRecord, "\(path): \"slots\" must be a whole number of at least 1, or null for no limit", path: path)
        }
        return QueueSettings(name: name, slots: slots)
    }

    /// Whether the spool's root belongs to this process's user (only its owner hands slots on:
    /// a member of a shared spool's group must not start the owner's commands as itself).
    public var isOwnedByCaller: Bool {
        var st = stat()
        return fstat(rootFD.rawValue, &st) == 0 && st.st_uid == getuid()
    }
}
