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

    /// A waiting entry as listed: its name, its flow, and whether the job runs after other flows.
    struct WaitingEntry {
        let name: String
        let flowId: String
        let runsAfter: Bool
    }

    /// The entries of `running/` (flow ids) and `waiting/` (in start order), unread.
    func entries() throws(SpoolError) -> (running: [String], waiting: [WaitingEntry]) {
        func names(_ fd: FileDescriptor, _ sub: String) throws(SpoolError) -> [String] {
            do { return try fd.entries().map(\.name).filter { !$0.hasPrefix(".") }.sorted() } catch {
                throw SpoolError.io("Listing", path.appending(sub), error)
            }
        }
        let running = try names(runningFD, Layout.queueRunning).filter(Identifier.isValid)
        let waiting = try names(waitingFD, Layout.queueWaiting).compactMap { name in
            Layout.waitingJob(fromEntry: name).map { WaitingEntry(name: name, flowId: $0.flowId, runsAfter: $0.runsAfter) }
        }
        return (running, waiting)
    }

    /// The entries of the queue, in start order (unread: an entry of a flow that ended stays
    /// until a hand-off meets it).
    public func jobs() throws(SpoolError) -> QueueJobs {
        let listed = try entries()
        return QueueJobs(running: listed.running, waiting: listed.waiting.map(\.flowId))
    }

    /// Creates `flow` with its tasks and its entry, durable together (the entry first: it is
    /// read only under this lock, which is held until the flow exists). The entry goes
    /// straight into `running/` when the job may start at once — it runs after no other
    /// flow, nothing waits, and fewer entries than `slots` are in `running/` — so the
    /// hand-off that follows starts it without a move and the flush that takes; else into
    /// `waiting/`.
    public func enqueue(_ flow: FlowRecord, tasks: [TaskRecord], source: String) throws(SpoolError) -> FlowSnapshot {
        let startsNow = flow.after.isEmpty ? try hasRoomAtOnce() : false
        let (directory, entry, sub) =
            startsNow ? (runningFD, flow.flowId, Layout.queueRunning) : (waitingFD, Layout.waitingEntry(of: flow), Layout.queueWaiting)
        let tx = Transaction(spool)
        try tx.create([], as: entry, in: directory, at: self.path.appending(sub))
        let created: FlowSnapshot
        do {
            created = try spool.create([FlowDraft(flow: flow, tasks: tasks, source: source)], in: tx)[0].get()
            try tx.end()
        } catch {
            try? directory.removeAt(entry)
            throw error
        }
        return created
    }

    /// Whether a new job may take a slot without waiting: nothing waits (it would start
    /// first), and fewer than `slots` entries are in `running/`, each counted as holding a
    /// slot (unread: one whose supervisor died makes the job wait for the hand-off instead).
    func hasRoomAtOnce() throws(SpoolError) -> Bool {
        let listed = try entries()
        guard listed.waiting.isEmpty else { return false }
        guard let limit = try settings().slots else { return true }
        return listed.running.count < limit
    }

    /// Adds a waiting entry for the existing flow `flow` (durable when this returns), for
    /// a job put back in the queue (`retry`); the caller removes it (`removeWaiting`) when
    /// the flow's change fails. An entry of a flow that is terminal is dropped by the hand-off
    /// that meets it, so a crash between the two writes leaves nothing behind.
    public func addWaiting(for flow: FlowRecord) throws(SpoolError) {
        let tx = Transaction(nil)
        try tx.create([], as: Layout.waitingEntry(of: flow), in: waitingFD, at: self.path.appending(Layout.queueWaiting))
        try tx.end()
    }

    /// Removes the waiting entry `addWaiting` made.
    public func removeWaiting(for flow: FlowRecord) {
        try? waitingFD.removeAt(Layout.waitingEntry(of: flow))
    }

    /// The slot hand-off (spool-layout.md, "Queues"): start the next waiting jobs while slots
    /// are free, reading no more flows than that takes. (1) A `running/` entry locked by its
    /// supervisor holds a slot, unread; one that no process holds is read (settled): removed
    /// when its flow ended or does not exist, its job started when no supervisor has taken
    /// it, else it holds a slot. (2) Each waiting job that runs after other flows is read:
    /// cancelled (and its entry removed) when one of them did not succeed, skipped while one
    /// has not ended. (3) In start order, while fewer than `slots` jobs hold a slot: an entry
    /// whose flow ended is removed; the others move to `running/` (durably) and are handed to
    /// `start`, which forks the job's supervisor and records it (`Runner`); a job it could
    /// not start stays in `running/`, unheld, and the next hand-off starts it. Returns the
    /// jobs after: those holding a slot, then the entries still waiting (unread past the
    /// last free slot). `created`, a job the caller has just enqueued under this lock, is
    /// not read again. With `firstMoveFlushedByStart`, the first job this call starts, when
    /// its entry was moved, is handed to `start` before the move is flushed: `start` takes the
    /// job over in this process and flushes both directories in the first barrier of the
    /// write that records its command running (`Spool.queueMoveFlush`), before the command
    /// can run; every other move is flushed here before its job starts.
    @discardableResult
    public func handOff(
        created: FlowSnapshot? = nil, firstMoveFlushedByStart: Bool = false, start: (FlowSnapshot) throws(SpoolError) -> Void
    ) throws(SpoolError) -> QueueJobs {
        let limit = try settings().slots
        let listed = try entries()
        var running: [String] = []
        var startedAny = false
        func begin(_ snap: FlowSnapshot) throws(SpoolError) {
            startedAny = true
            try start(snap)
        }
        for id in listed.running {
            if try holdsSlot(id, known: created?.flow.flowId == id ? created : nil, start: begin) { running.append(id) }
        }
        // (2) Jobs run after other flows: those whose turn has not come are set aside here.
        // Each flow they wait for is read once (a hundred jobs may wait for one flow).
        var waitedFor: [String: FlowRecord?] = [:]
        func readWaitedFor(_ id: String) -> FlowRecord? {
            if let known = waitedFor[id] { return known }
            let read = try? spool.flow(id).flow
            waitedFor[id] = read
            return read
        }
        var ready: [String: FlowSnapshot] = [:]
        var pending: Set<String> = []
        var gone: Set<String> = []
        for entry in listed.waiting where entry.runsAfter {
            // A job whose manifest says it still waits for a flow that has not ended is set
            // aside on that read alone; the others are read whole (settled) and weighed again.
            if let flow = try? spool.readManifest(entry.flowId), !flow.isTerminal, flow.cancelRequestedAt == nil,
                case .pending = spool.dependencies(of: flow, read: readWaitedFor)
            {
                pending.insert(entry.name)
                continue
            }
            guard let snap = try live(entry.flowId, entry: entry.name, in: waitingFD) else {
                gone.insert(entry.name)
                continue
            }
            switch spool.dependencies(of: snap.flow, read: readWaitedFor) {
            case .met: ready[entry.name] = snap
            case .pending: pending.insert(entry.name)
            case .failed(let summary):
                try spool.cancelUnmet(entry.flowId, summary: summary)
                waitedFor.removeValue(forKey: entry.flowId)  // a job after this one reads it cancelled
                try? waitingFD.removeAt(entry.name)
                gone.insert(entry.name)
            }
        }
        // (3) In start order, while a slot is free.
        var waiting: [String] = []
        for (index, entry) in listed.waiting.enumerated() where !gone.contains(entry.name) {
            if pending.contains(entry.name) {
                waiting.append(entry.flowId)
                continue
            }
            if let limit, running.count >= limit {
                waiting += listed.waiting[index...].filter { !gone.contains($0.name) }.map(\.flowId)
                break
            }
            var snap = ready[entry.name] ?? (created?.flow.flowId == entry.flowId ? created : nil)
            if snap == nil { snap = try live(entry.flowId, entry: entry.name, in: waitingFD) }
            guard let snap else { continue }
            do { try waitingFD.renameAt(entry.name, to: runningFD, entry.flowId) } catch {
                throw SpoolError.io("Moving the job to", path.appending(Layout.queueRunning).appending(entry.flowId), error)
            }
            running.append(entry.flowId)
            let needsStart = LockedQueue.needsStart(snap)
            // Durable before the job starts, as every rename of the spool: both directories in
            // one barrier (here, or in the first write of the process that takes the job over).
            if !(firstMoveFlushedByStart && !startedAny && needsStart) {
                var barrier = FlushSet()
                barrier.add(directory: runningFD, self.path.appending(Layout.queueRunning))
                barrier.add(directory: waitingFD, self.path.appending(Layout.queueWaiting))
                try barrier.flush()
            }
            if needsStart { try begin(snap) }
        }
        return QueueJobs(running: running, waiting: waiting)
    }

    /// Whether the job of `running/<id>` holds a slot: without a read when its supervisor
    /// holds the entry's lock (`SlotHold`); else its flow is read under that lock, the entry
    /// removed when the flow ended (false), and the job started when no supervisor took it.
    /// A `known` snapshot of the flow stands in for that read.
    func holdsSlot(_ id: String, known: FlowSnapshot? = nil, start: (FlowSnapshot) throws(SpoolError) -> Void) throws(SpoolError) -> Bool {
        let entry: FileDescriptor
        do { entry = try runningFD.openAt(id, .readOnly) } catch {
            if error == .noSuchFileOrDirectory { return false }  // its supervisor removed it meanwhile
            throw SpoolError.io("Opening", path.appending(Layout.queueRunning).appending(id), error)
        }
        let locked: Bool
        do { locked = try entry.lock(exclusive: true, wait: false) } catch {
            entry.closeQuietly()
            throw SpoolError.io("Locking", path.appending(Layout.queueRunning).appending(id), error)
        }
        guard locked else {
            entry.closeQuietly()
            return true
        }
        let snap: FlowSnapshot?
        do { snap = if let known { known } else { try live(id, entry: id, in: runningFD) } } catch {
            entry.closeQuietly()
            throw error
        }
        // Unlocked before `start`, which locks the entry again for the supervisor it forks.
        entry.closeQuietly()
        guard let snap else { return false }
        if LockedQueue.needsStart(snap) { try start(snap) }
        return true
    }

    /// The flow of an entry as it is now (settled), or nil after removing the entry when the
    /// flow ended or does not exist. A flow asked to cancel whose command never started is
    /// recorded cancelled here (a cancel interrupted between its two writes).
    func live(_ id: String, entry: String, in dir: FileDescriptor) throws(SpoolError) -> FlowSnapshot? {
        var snap: FlowSnapshot?
        do { snap = try spool.flow(id) } catch  where error.code == .notFound { snap = nil }
        if var s = snap, !s.flow.isTerminal, s.flow.cancelRequestedAt != nil, LockedQueue.unstarted(s) != nil {
            s = try spool.stopCommands(flowId: id, only: Set(s.tasks.filter { $0.isCommand && $0.status.isActive }.map(\.taskId)), grace: 0)
            snap = s
        }
        if let s = snap, !s.flow.isTerminal { return s }
        try? dir.removeAt(entry)
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

/// A supervisor's hold on its job's slot: the lock of the job's `running/<flowId>` entry,
/// taken by the hand-off that forks the supervisor and kept by the supervisor while it runs
/// the job, so that a hand-off sees the slot held without reading the flow. The kernel lets
/// it go when the supervisor dies.
public final class SlotHold {
    let directory: FileDescriptor
    let entry: FileDescriptor
    let flowId: String

    init(directory: FileDescriptor, entry: FileDescriptor, flowId: String) {
        self.directory = directory
        self.entry = entry
        self.flowId = flowId
    }

    deinit {
        entry.closeQuietly()
        directory.closeQuietly()
    }

    /// Once the flow has ended: removes the entry, then lets the lock go (when this value is
    /// released). A crash before leaves the entry unheld, and the next hand-off removes it.
    public func removeEntry() {
        try? directory.removeAt(flowId)
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
        dependencies(of: flow) { (id) in try? self.flow(id).flow }
    }

    /// The same, each flow it runs after read by `read` (nil: it does not exist), so that a
    /// hand-off weighing many jobs that wait for the same flow reads that flow once.
    func dependencies(of flow: FlowRecord, read: (String) -> FlowRecord?) -> Dependencies {
        var pending: [String] = []
        for id in flow.after {
            guard let other = read(id) else { return .failed("flow \(id), which it runs after, does not exist") }
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

    /// The `running/` entry of flow `flowId` in queue `queue`, opened and locked, for a
    /// supervisor to keep (`SlotHold`); nil when the job has no entry there or it cannot be
    /// opened or locked now (hand-offs then read the flow to see whether the slot is held).
    public func lockSlotEntry(queue: String, flowId: String) -> FileDescriptor? {
        guard QueueName.isValid(queue), Identifier.isValid(flowId),
            let entry = try? rootFD.openAt(SpoolDirectory.queues.rawValue + "/" + queue + "/" + Layout.queueRunning + "/" + flowId, .readOnly)
        else { return nil }
        guard (try? entry.lock(exclusive: true, wait: false)) == true else {
            entry.closeQuietly()
            return nil
        }
        return entry
    }

    /// A supervisor's hold on the slot of flow `flowId` in `queue`, through `entry`, the
    /// locked `running/` entry its parent handed it (`lockSlotEntry`).
    public func slotHold(queue: String, flowId: String, entry: FileDescriptor) -> SlotHold? {
        guard let dir = try? rootFD.openDirectoryAt(SpoolDirectory.queues.rawValue + "/" + queue + "/" + Layout.queueRunning) else {
            entry.closeQuietly()
            return nil
        }
        return SlotHold(directory: dir, entry: entry, flowId: flowId)
    }

    /// The directories a job's move into `running/` of `queue` changed, opened to be flushed
    /// in a write's first barrier (`Spool.mutate(flushing:)`). Should one not open (no
    /// descriptor left), the filesystem is synced here instead, and nothing is returned.
    public func queueMoveFlush(_ queue: String) -> [AlsoFlushed] {
        var items: [AlsoFlushed] = []
        for sub in [Layout.queueRunning, Layout.queueWaiting] {
            let relative = SpoolDirectory.queues.rawValue + "/" + queue + "/" + sub
            guard let fd = try? rootFD.openDirectoryAt(relative) else {
                for case .directory(let fd, _) in items { fd.closeQuietly() }
                try? rootFD.synchronizeFileSystem()
                return []
            }
            items.append(.directory(fd, root.appending(relative)))
        }
        return items
    }

    /// The names of the queues that have a directory, sorted.
    public func queueNames() -> [String] {
        guard let dir = try? rootFD.openDirectoryAt(SpoolDirectory.queues.rawValue) else { return [] }
        defer { dir.closeQuietly() }
        return ((try? dir.entries()) ?? []).map(\.name).filter(QueueName.isValid).sorted()
    }

    /// The names of the queues with a job in them, waiting or holding a slot (a short readdir
    /// or two per queue, each stopping at the first name; no lock): a job holding a slot may
    /// need its supervisor started again.
    public func queuesWithJobs() -> [String] {
        queueNames().filter { name in
            [Layout.queueWaiting, Layout.queueRunning].contains { sub in
                guard let dir = try? rootFD.openDirectoryAt(SpoolDirectory.queues.rawValue + "/" + name + "/" + sub) else { return false }
                defer { dir.closeQuietly() }
                return (try? dir.hasVisibleEntry(rewind: false)) ?? false
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
