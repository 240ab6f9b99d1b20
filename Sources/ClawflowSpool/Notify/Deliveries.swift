import ClawflowModel
import Glibc
import SystemPackage

/// Where a delivery stands (spool-layout.md, "Notifications"). A delivered one has no file.
public enum DeliveryStatus: String, Sendable, CaseIterable {
    /// Recorded by the write that made the transition; no hook has run yet.
    case pending
    /// A hook was started and its end is not recorded yet: a deliverer that finds it so
    /// died meanwhile, and runs that hook again as a repeat.
    case started
    /// A hook failed or timed out; it runs again at `nextAttemptAt`.
    case retrying
    /// Every run allowed failed; the file is in `notify/failed/`.
    case failed
}

/// One notification to deliver to the hooks: `notify/<deliveryId>.json`, written by the write
/// that made the transition, rewritten by the deliverer as it goes, removed once every hook
/// has taken it (spool-layout.md, "Notifications").
public struct Delivery: Sendable, Equatable {
    /// Every key of the file (unknown ones survive a rewrite).
    public var fields: JSONObject

    /// Wraps the fields of a delivery file; nil when they lack what a deliverer needs.
    public init?(fields: JSONObject) {
        guard fields["schema"]?.intValue == 1, let id = fields["deliveryId"]?.stringValue, Identifier.isValid(id),
            let flow = fields["flowId"]?.stringValue, Identifier.isValid(flow),
            let event = fields["event"]?.stringValue, NotificationSubject(rawValue: event) != nil,
            fields["to"]?.stringValue != nil, fields["record"]?.objectValue != nil,
            fields["status"]?.stringValue.flatMap(DeliveryStatus.init(rawValue:)) != nil
        else { return nil }
        if let t = fields["taskId"], !(t.stringValue.map(Identifier.isValid) ?? false) { return nil }
        self.fields = fields
    }

    /// A new pending delivery of `notification`, carrying `record` as it was written.
    init(id: String, _ notification: Notification, record: JSONObject, flowRevision: Int64, at now: Timestamp) {
        var f: [String: JSON] = [
            "schema": .int(1), "deliveryId": .string(id), "event": .string(notification.subject.rawValue), "flowId": .string(notification.flowId),
            "to": .string(notification.to), "record": .object(record), "flowRevision": .int(flowRevision), "status": .string(DeliveryStatus.pending.rawValue),
            "attempts": .int(0), "createdAt": .string(now.description),
        ]
        if let t = notification.taskId { f["taskId"] = .string(t) }
        if let from = notification.from { f["from"] = .string(from) }
        if let c = notification.command { f["command"] = .string(c) }
        fields = JSONObject(f)
    }

    /// The delivery's id (`CLAWFLOW_DELIVERY_ID`), a UUIDv7: names sort in recording order.
    public var deliveryId: String { fields["deliveryId"]!.stringValue! }
    /// The flow.
    public var flowId: String { fields["flowId"]!.stringValue! }
    /// The task, for a task's change.
    public var taskId: String? { fields["taskId"]?.stringValue }
    /// `task_status` or `flow_status`.
    public var event: NotificationSubject { NotificationSubject(rawValue: fields["event"]!.stringValue!)! }
    /// The status before (absent for a record created by the write).
    public var from: String? { fields["from"]?.stringValue }
    /// The status after.
    public var to: String { fields["to"]!.stringValue! }
    /// The record as the write left it (the hook's stdin).
    public var record: JSONObject { fields["record"]!.objectValue! }
    /// The flow's revision as of the write: a delivery whose record on disk is older belongs to
    /// a write a crash undid.
    public var flowRevision: Int64 { fields["flowRevision"]?.intValue ?? 0 }
    /// The job's own hook, `sh -c` text.
    public var command: String? { fields["command"]?.stringValue }
    /// When the transition was written.
    public var createdAt: Timestamp? { fields["createdAt"]?.stringValue.flatMap(Timestamp.init(iso8601:)) }

    /// Where it stands.
    public var status: DeliveryStatus {
        get { DeliveryStatus(rawValue: fields["status"]!.stringValue!)! }
        set { fields["status"] = .string(newValue.rawValue) }
    }
    /// Hook runs started so far, failed ones and repeats included.
    public var attempts: Int {
        get { Int(fields["attempts"]?.intValue ?? 0) }
        set { fields["attempts"] = .int(Int64(newValue)) }
    }
    /// The hooks that have taken it (`job`, `hooks/<name>`).
    public var delivered: [String] {
        get { fields["delivered"]?.arrayValue?.compactMap(\.stringValue) ?? [] }
        set { fields["delivered"] = newValue.isEmpty ? nil : .array(newValue.map(JSON.string)) }
    }
    /// The hook started and not yet recorded as ended (status `started`).
    public var startedHook: String? {
        get { fields["startedHook"]?.stringValue }
        set { fields["startedHook"] = newValue.map(JSON.string) }
    }
    /// The hooks that have been started at least once for it (a run of one of these is a repeat).
    public var tried: [String] {
        get { fields["tried"]?.arrayValue?.compactMap(\.stringValue) ?? [] }
        set { fields["tried"] = newValue.isEmpty ? nil : .array(newValue.map(JSON.string)) }
    }
    /// When the next run is due (status `retrying`).
    public var nextAttemptAt: Timestamp? {
        get { fields["nextAttemptAt"]?.stringValue.flatMap(Timestamp.init(iso8601:)) }
        set { fields["nextAttemptAt"] = newValue.map { .string($0.description) } }
    }
    /// The last failure: `{"hook", "at", "exitCode" | "signal" | "timedOut", "stderr"}`.
    public var lastError: JSONObject? {
        get { fields["lastError"]?.objectValue }
        set { fields["lastError"] = newValue.map(JSON.object) }
    }

    /// The first line of its file in `notify/` (compact JSON and a newline), or, `pretty`,
    /// its file in `notify/failed/`.
    func fileBytes(pretty: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        JSON.object(fields).write(into: &out, indent: 0, pretty: pretty)
        out.append(0x0A)
        return out
    }

    /// The fields a deliverer changes, as one line to append (`null` for a field removed).
    static let progressFields = ["status", "attempts", "runs", "delivered", "startedHook", "failures", "lastError", "nextAttemptAt"]

    /// The delivery as its journal says: the first line, then each later line's fields over
    /// it (a field `null` removes it). Lines that do not parse (the end of an append a crash
    /// cut short) are skipped. Nil when the first line is not a delivery.
    static func fold(_ bytes: [UInt8]) -> Delivery? {
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: true).makeIterator()
        guard let first = lines.next(), let object = (try? JSON.parse(bytes: Array(first)))?.objectValue, var d = Delivery(fields: object) else { return nil }
        while let line = lines.next() {
            guard let update = (try? JSON.parse(bytes: Array(line)))?.objectValue else { continue }
            var next = d.fields
            for (k, v) in update where progressFields.contains(k) { next[k] = v.isNull ? nil : v }
            if let folded = Delivery(fields: next) { d = folded }
        }
        return d
    }
}

/// A spool-wide hook: an executable in `hooks/` (README.md, "Notification hooks").
public struct SpoolHook: Sendable, Equatable {
    /// Its file name in `hooks/`.
    public var name: String
    /// Its path.
    public var path: FilePath
}

extension Spool {
    // MARK: - Recording (inside the write that makes the transition)

    /// Whether `hooks/` holds anything but dot-files: one open and one getdents, and only
    /// when a write has a transition its policy tells of.
    func hasSpoolHooks() -> Bool {
        guard let dir = try? rootFD.openDirectoryAt(Layout.hooksDirectory) else { return false }
        defer { dir.closeQuietly() }
        return ((try? dir.entries(rewind: false)) ?? []).contains { !$0.name.hasPrefix(".") }
    }

    /// The deliveries of `notifications` that some hook would receive (the record's own hook,
    /// or any spool-wide hook), each carrying its record as written.
    func deliveries(for notifications: [Notification], flow: FlowRecord, tasks: [String: TaskRecord], at now: Timestamp) -> [Delivery] {
        guard !notifications.isEmpty else { return [] }
        var spoolHooks: Bool?
        var out: [Delivery] = []
        for n in notifications {
            if n.command == nil {
                if spoolHooks == nil { spoolHooks = hasSpoolHooks() }
                if spoolHooks == false { continue }
            }
            let record = n.taskId.flatMap { tasks[$0]?.fields } ?? flow.fields
            out.append(Delivery(id: Spool.newId(at: now), n, record: record, flowRevision: flow.revision, at: now))
        }
        return out
    }

    /// Stages the files of `deliveries` in `notify/` under temp names; they and their names
    /// (`notify/` itself) join the first barrier, so that from then on a crash leaves each
    /// delivery at least as a temp file (`adoptOrphans`). The caller renames them into place
    /// after the records they tell of: no deliverer sees a delivery before its record.
    func stageDeliveries(_ deliveries: [Delivery], in tx: Transaction) throws(SpoolError) -> [StagedReplacement] {
        guard !deliveries.isEmpty else { return [] }
        let dir = try notifyDirectory.openOrCreate(root: root)
        var staged: [StagedReplacement] = []
        for d in deliveries {
            staged.append(try tx.stage(d.fileBytes(), as: Layout.deliveryFile(d.deliveryId), in: dir, at: path(.notify)))
        }
        tx.barrier.add(directory: dir, self.path(.notify))
        return staged
    }

    /// The temp files in `notify/` of writers that are gone: deliveries whose rename a crash
    /// may have lost after their record's (or those of a write that never got so far).
    public func orphanedDeliveries() -> [String] { deliveryListing().orphans }

    /// One listing of `notify/`: the names that may be deliveries (no dot-files), in recording
    /// order, and the temp files of writers that are gone (`orphanedDeliveries`).
    public func deliveryListing() -> (names: [String], orphans: [String]) {
        guard let dir = notifyDirectory.fd, let entries = try? dir.entries() else { return ([], []) }
        let names = entries.filter { !$0.name.hasPrefix(".") && $0.kind != .directory && Layout.deliveryId(fromFile: $0.name) != nil }.map(\.name).sorted()
        let orphans = entries.map(\.name).filter { name in
            guard let pid = Layout.tempWriterPid(name), Layout.deliveryId(fromTemp: name) != nil else { return false }
            return !writerMayRun(pid, entry: name, in: dir)
        }
        return (names, orphans)
    }

    /// Renames into place each orphaned delivery whose record is on disk at least as new as
    /// the delivery (`deliveryStands`), and removes the others (their write was undone, or
    /// stopped before its first barrier); `notify/` is flushed after. The names adopted and removed.
    @discardableResult
    public func adoptOrphans() -> (adopted: [String], removed: [String]) {
        let orphans = orphanedDeliveries()
        guard !orphans.isEmpty, let dir = notifyDirectory.fd else { return ([], []) }
        var adopted: [String] = []
        var removed: [String] = []
        for temp in orphans {
            guard let id = Layout.deliveryId(fromTemp: temp) else { continue }
            let bytes = try? DurableFile.read(in: dir, name: temp, path: path(.notify).appending(temp), limit: Layout.recordLimit + 65536)
            let fields = bytes.flatMap { try? DurableFile.parseObject($0, path: path(.notify)) }
            if let fields, let d = Delivery(fields: fields), d.deliveryId == id, deliveryStands(d),
                (try? dir.renameAt(temp, to: dir, Layout.deliveryFile(id), flags: .noReplace)) != nil
            {
                adopted.append(id)
            } else if (try? dir.removeAt(temp)) != nil {
                removed.append(temp)
            }
        }
        try? dir.synchronize()
        return (adopted, removed)
    }

    // MARK: - Delivering (the deliverer's side)

    /// The names in `notify/` that may be deliveries (no dot-files), in recording order; empty
    /// when there is no `notify/`. One getdents: cheap enough for every command to ask.
    public func deliveryNames() -> [String] { deliveryListing().names }

    /// The lock that makes one deliverer per spool: an exclusive `flock` on `notify/`, taken
    /// without waiting unless `wait`. The open, locked directory, or nil when another
    /// deliverer holds it (or there is no `notify/`). Closing it releases the lock.
    public func lockDeliveries(wait: Bool = false) -> FileDescriptor? {
        guard let fd = try? rootFD.openDirectoryAt(SpoolDirectory.notify.rawValue) else { return nil }
        guard (try? fd.lock(exclusive: true, wait: wait)) == true else {
            fd.closeQuietly()
            return nil
        }
        return fd
    }

    /// Reads `notify/<name>`: the delivery and its owner, or nil when it is gone meanwhile.
    /// A file that is not a delivery (unparseable, a planted symlink) throws `invalidRecord`.
    public func readDelivery(_ name: String, failed: Bool = false) throws(SpoolError) -> (delivery: Delivery, owner: uid_t)? {
        let dirName = failed ? SpoolDirectory.failedNotify : SpoolDirectory.notify
        guard let dir = try? rootFD.openDirectoryAt(dirName.rawValue) else { return nil }
        defer { dir.closeQuietly() }
        let filePath = path(dirName).appending(name)
        let fd: FileDescriptor
        do { fd = try dir.openAt(name, .readOnly, options: [.noFollow, .nonBlocking]) } catch {
            if error == .noSuchFileOrDirectory { return nil }
            throw SpoolError(.invalidRecord, "\(filePath) cannot be read as a delivery: \(error)", path: filePath, errno: error)
        }
        defer { fd.closeQuietly() }
        let st: FileStatus
        let bytes: [UInt8]
        do throws(Errno) {
            st = try fd.status()
            guard st.kind == .regular else { throw Errno.invalidArgument }
            bytes = try fd.readToEnd(limit: Layout.recordLimit + 65536, regularFile: true)
        } catch {
            throw SpoolError(.invalidRecord, "\(filePath) is not a regular file clawflow can read: \(error)", path: filePath, errno: error)
        }
        let read = failed ? Delivery(fields: try DurableFile.parseObject(bytes, path: filePath)) : Delivery.fold(bytes)
        guard let d = read, Layout.deliveryFile(d.deliveryId) == name else {
            throw SpoolError(.invalidRecord, "\(filePath) is not a delivery clawflow wrote (fields missing or of the wrong type).", path: filePath)
        }
        return (d, st.owner)
    }

    /// Records a deliverer's progress on `d`: appends its changed fields as one line to the
    /// delivery's journal and flushes it, together with `alsoFlushing` (one flush round: the
    /// directories that make its record durable, `deliveryStands`). A line a crash cuts short
    /// is skipped by readers, and the next append starts on a line of its own.
    public func saveDelivery(_ d: Delivery, alsoFlushing: [FileDescriptor] = []) throws(SpoolError) {
        let filePath = path(.notify).appending(Layout.deliveryFile(d.deliveryId))
        guard let dir = notifyDirectory.fd else { throw SpoolError(.notFound, "\(path(.notify)) is missing.", path: path(.notify)) }
        let fd: FileDescriptor
        do { fd = try dir.openAt(Layout.deliveryFile(d.deliveryId), .readWrite, options: [.append, .noFollow, .nonBlocking]) } catch {
            throw SpoolError.io("Opening the delivery", filePath, error)
        }
        defer { fd.closeQuietly() }
        var line: [UInt8] = []
        var last: UInt8 = 0x0A
        let size = (try? fd.status().size) ?? 0
        if size > 0, pread(fd.rawValue, &last, 1, off_t(size - 1)) == 1, last != 0x0A { line.append(0x0A) }
        var update = JSONObject()
        for k in Delivery.progressFields { update[k] = d.fields[k] ?? .null }
        JSON.object(update).write(into: &line, indent: 0, pretty: false)
        line.append(0x0A)
        do { try fd.writeFully(line) } catch { throw SpoolError.io("Appending to the delivery", filePath, error) }
        if let (index, error) = FileDescriptor.synchronizeAll([fd] + alsoFlushing, files: [true] + alsoFlushing.map { _ in false }).first {
            throw SpoolError.io("Flushing", index == 0 ? filePath : path(.flows), error)
        }
    }

    /// Removes a delivered delivery's file and flushes `notify/`. A crash before the flush
    /// brings the file back as it last was: its last hook runs again, as a repeat.
    public func removeDelivery(_ deliveryId: String) throws(SpoolError) {
        guard let dir = notifyDirectory.fd else { return }
        do { try dir.removeAt(Layout.deliveryFile(deliveryId)) } catch {
            if error == .noSuchFileOrDirectory { return }
            throw SpoolError.io("Removing the delivered notification", path(.notify).appending(Layout.deliveryFile(deliveryId)), error)
        }
        try DurableFile.sync(dir, path(.notify))
    }

    /// Moves a delivery whose every run failed into `notify/failed/` (written there first,
    /// then removed from `notify/`, both flushed): `audit` reports it until someone removes it.
    public func failDelivery(_ d: Delivery) throws(SpoolError) {
        let notify = try notifyDirectory.openOrCreate(root: root)
        do { try notify.makeDirectoryAt("failed", permissions: 0o700, existingIsFine: true) } catch {
            throw SpoolError.io("Creating", path(.failedNotify), error)
        }
        let failed: FileDescriptor
        do { failed = try notify.openDirectoryAt("failed") } catch { throw SpoolError.io("Opening", path(.failedNotify), error) }
        defer { failed.closeQuietly() }
        try DurableFile.replace(in: failed, name: Layout.deliveryFile(d.deliveryId), bytes: d.fileBytes(pretty: true), directoryPath: path(.failedNotify))
        try removeDelivery(d.deliveryId)
    }

    /// Whether the change that recorded `d` stands: its record on disk is at least as new as
    /// the delivery (`flowRevision` of the task, or the manifest's `revision`, at least the
    /// delivery's `flowRevision`). A record not yet that new may belong to a write still at
    /// work (a new flow's delivery follows its rename): this looks again for a few
    /// milliseconds, then waits for a shared lock of the flow (or of the spool root, which a
    /// creation holds) and looks once more. Nil: a crash undid the change. Else the open
    /// directories whose flush makes the record durable (its own and `flows/`): the caller
    /// flushes them before it tells anyone (`saveDelivery`), closes them after.
    public func standingRecord(of d: Delivery) -> [FileDescriptor]? {
        for _ in 0..<50 {
            if let dirs = recordIsAsNew(as: d) { return dirs }
            usleep(300)
        }
        let flowDir = try? openFlowDirectory(d.flowId)
        let lockHolder = flowDir ?? (try? rootFD.openAt(".", .readOnly, options: .directory))  // a lock is the open file's: our own descriptor
        defer { lockHolder?.closeQuietly() }  // closing drops the shared lock
        guard let lockHolder, (try? lockHolder.lock(exclusive: false, wait: true)) == true else { return nil }
        return recordIsAsNew(as: d)
    }

    /// Whether the change that recorded `d` stands (`standingRecord`), its record flushed.
    public func deliveryStands(_ d: Delivery) -> Bool {
        guard let dirs = standingRecord(of: d) else { return false }
        defer { for fd in dirs { fd.closeQuietly() } }
        return FileDescriptor.synchronizeAll(dirs, files: dirs.map { _ in false }).isEmpty
    }

    /// The directories to flush (a descriptor of its own for each) when the record `d` tells
    /// of is on disk at least as new as `d`, else nil.
    private func recordIsAsNew(as d: Delivery) -> [FileDescriptor]? {
        guard let dir = try? openFlowDirectory(d.flowId) else { return nil }
        defer { dir.closeQuietly() }
        let holder: FileDescriptor?
        if let taskId = d.taskId {
            guard let tasksDir = try? dir.openDirectoryAt(Layout.tasks) else { return nil }
            guard let bytes = try? DurableFile.read(in: tasksDir, name: Layout.taskFile(taskId), path: tasksPath(d.flowId)),
                let object = try? DurableFile.parseObject(bytes, path: tasksPath(d.flowId)), let task = try? TaskRecord(validating: object),
                (task.flowRevision ?? 0) >= d.flowRevision
            else {
                tasksDir.closeQuietly()
                return nil
            }
            holder = tasksDir
        } else {
            guard let flow = try? readManifest(in: dir, flowId: d.flowId), flow.revision >= d.flowRevision else { return nil }
            holder = try? dir.openAt(".", .readOnly, options: .directory)
        }
        let flows = try? flowsFD.openAt(".", .readOnly, options: .directory)
        return [holder, flows].compactMap { $0 }
    }

    /// Appends one `notify` event to the flow's events.jsonl, in one `write(2)` with
    /// `O_APPEND` (no flow lock: a deliverer never holds up a write of the ledger), flushed.
    /// Nothing is logged for a flow that is gone.
    public func logDelivery(flowId: String, _ event: [String: JSON], source: String) {
        guard let dir = try? openFlowDirectory(flowId) else { return }
        defer { dir.closeQuietly() }
        guard let log = try? openEventLog(in: dir, flowId: flowId) else { return }
        defer { log.closeQuietly() }
        var e = event
        e["event"] = .string("notify")
        _ = try? log.writeFully(eventBytes([e], at: Spool.now(), source: source))
        _ = try? log.synchronize()
    }

    /// The spool-wide hooks that run, in name order, and the files of `hooks/` that do not,
    /// with why: a hook is a regular file (not a symlink), not a dot-file, owned by this
    /// process's user, executable by it and writable by no one else.
    public func spoolHooks() -> (hooks: [SpoolHook], ignored: [(name: String, reason: String)]) {
        guard let dir = try? rootFD.openDirectoryAt(Layout.hooksDirectory) else { return ([], []) }
        defer { dir.closeQuietly() }
        var hooks: [SpoolHook] = []
        var ignored: [(String, String)] = []
        let me = geteuid()
        for e in ((try? dir.entries(rewind: false)) ?? []).sorted(by: { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }) {
            if e.name.hasPrefix(".") { continue }
            guard let st = try? dir.statusAt(e.name) else { continue }
            if st.kind != .regular {
                ignored.append((e.name, "is a \(st.kind.word), not a regular file"))
            } else if st.owner != me {
                ignored.append((e.name, "belongs to uid \(st.owner), not to uid \(me) who delivers"))
            } else if st.permissions & 0o100 == 0 {
                ignored.append((e.name, "is not executable (chmod u+x)"))
            } else if st.permissions & 0o022 != 0 {
                ignored.append((e.name, "is writable by other users (chmod go-w)"))
            } else {
                hooks.append(SpoolHook(name: e.name, path: root.appending(Layout.hooksDirectory).appending(e.name)))
            }
        }
        return (hooks, ignored)
    }
}
