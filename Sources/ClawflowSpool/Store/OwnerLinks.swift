import ClawflowModel
import Glibc
import SystemPackage

/// A link change prepared under the owner's lock: the marker is on disk, the rename is not.
struct PendingOwnerLink {
    var name: String
    var target: String
    /// The key had no link: it gets its first one at commit, with no marker before it.
    var isFirst = false
}

extension Spool {
    // MARK: - Indexes (spool-layout.md, "Indexes")

    /// Whether a claim of `taskId` may find an entry there already (or cannot tell, without
    /// the index): the caller then locks the whole spool, under which a claim left by a
    /// creation that died can be told from one being made (`claimTaskIds`).
    func taskIdMayBeClaimed(_ taskId: String) -> Bool {
        guard let taskIndexFD else { return true }
        if case .failure(.noSuchFileOrDirectory) = Result(catching: { () throws(Errno) in try taskIndexFD.statusAt(taskId) }) { return false }
        return true
    }

    /// Claims `index/tasks/<taskId>` for each new task. Under the whole spool's lock a claim
    /// left by a creation that died (its flow has no such task) is taken over; under an
    /// owner's lock (`Transaction.lockOwners`, taken when `taskIdMayBeClaimed` said no) an
    /// entry found is another change's claim, made meanwhile, and the id is refused. The
    /// index directory joins `barrier`, which the caller flushes before the tasks appear.
    func claimTaskIds(_ taskIds: [String], flowId: String, in tx: Transaction) throws(SpoolError) {
        guard !taskIds.isEmpty else { return }
        var indexPath: FilePath { path(.taskIndex) }
        guard let taskIndexFD else {
            // No index (readers scan, the next writer to open the spool rebuilds it): the
            // scan is the check that a chosen id is new.
            for taskId in taskIds {
                if let holder = taskIndexTarget(taskId) {
                    throw SpoolError(
                        .linkRefused,
                        "Task id \(taskId) is already used by a task of flow \(holder). Choose another --task-id, or leave it out to get a new one.")
                }
            }
            return
        }
        for taskId in taskIds {
            let target = Layout.taskIndexTarget(flowId)
            let created: Bool
            do { created = try taskIndexFD.symlinkAt(taskId, target: target, existingIsFine: true) } catch {
                throw SpoolError.io("Indexing the task", indexPath.appending(taskId), error)
            }
            if !created {
                let holder = taskIndexTarget(taskId)
                if !tx.holdsSpoolLock || holder.map({ taskFileExists(flowId: $0, taskId: taskId) }) == true {
                    throw SpoolError(
                        .linkRefused,
                        "Task id \(taskId) is already used\(holder.map { " by a task of flow \($0)" } ?? ""). Choose another --task-id, or leave it out to get a new one."
                    )
                }
                try tx.replaceLink(taskId, target: target, in: taskIndexFD, at: indexPath)
            }
        }
        tx.barrier.add(directory: taskIndexFD, indexPath)
        tx.barrier.addSymlinks()
    }

    /// The flow `index/tasks/<taskId>` names, or nil. Without the index, the flow that holds
    /// a task file of that id (a scan of every flow's `tasks/`).
    func taskIndexTarget(_ taskId: String) -> String? {
        guard let taskIndexFD else {
            return (try? flowIds())?.first { taskFileExists(flowId: $0, taskId: taskId) }
        }
        return (try? taskIndexFD.readLinkAt(taskId)).flatMap(Layout.flowId(fromTaskIndex:))
    }

    /// Every task id in the spool: the names in `index/tasks`, or without it a scan of every
    /// flow's `tasks/`.
    func allTaskIds() throws(SpoolError) -> [String] {
        if let taskIndexFD {
            do { return try taskIndexFD.entries().map(\.name).filter(Identifier.isValid) } catch {
                throw SpoolError.io("Listing", path(.taskIndex), error)
            }
        }
        var ids: [String] = []
        for flowId in try flowIds() {
            guard let dir = try? flowsFD.openDirectoryAt(flowId + "/" + Layout.tasks) else { continue }
            ids += ((try? dir.entries()) ?? []).compactMap { e in
                e.name.hasSuffix(".json") ? String(e.name.dropLast(5)) : nil
            }.filter(Identifier.isValid)
            dir.closeQuietly()
        }
        return ids
    }

    func taskFileExists(flowId: String, taskId: String) -> Bool {
        (try? flowsFD.statusAt(flowId + "/tasks/" + Layout.taskFile(taskId)))?.kind == .regular
    }

    /// The lock of the owner key named `name`: its directory `index/owners/<name>/`, opened and
    /// locked (returned open; closing it unlocks), and whether this call made it; shared
    /// unless `exclusive`, but always exclusive when made.
    /// A key's first directory is made under a temp name, locked, then renamed into place, so
    /// no other change can lock it before this one's transaction, which flushes `index/owners`,
    /// ends. Call with the root lock held shared (no directory there is removed meanwhile).
    func lockOwnerIndex(_ name: String, exclusive: Bool = true) throws(SpoolError) -> (FileDescriptor, made: Bool) {
        guard let index = ownerIndexFD else { preconditionFailure("owner locks need index/owners") }
        var dirPath: FilePath { path(.ownerIndex).appending(name) }
        func locked(_ fd: FileDescriptor, exclusive: Bool = true) throws(SpoolError) -> FileDescriptor {
            do { try fd.lock(exclusive: exclusive) } catch {
                fd.closeQuietly()
                throw SpoolError.io("Locking the owner's index", dirPath, error)
            }
            return fd
        }
        while true {
            let existing: FileDescriptor?
            do { existing = try index.openDirectoryAt(name) } catch {
                guard error == .noSuchFileOrDirectory else { throw SpoolError.io("Opening the owner's index", dirPath, error) }
                existing = nil
            }
            if let existing { return (try locked(existing, exclusive: exclusive), false) }
            let temp = Layout.tempName(for: name, pid: Spool.pid)
            let opened: FileDescriptor
            do {
                try index.makeDirectoryAt(temp)
                opened = try index.openDirectoryAt(temp)
            } catch {
                try? index.removeAt(temp, directory: true)
                throw SpoolError.io("Making the owner's index", dirPath, error)
            }
            let made: FileDescriptor
            do { made = try locked(opened) } catch {
                try? index.removeAt(temp, directory: true)
                throw error
            }
            do { try index.renameAt(temp, to: index, name, flags: .noReplace) } catch {
                made.closeQuietly()
                try? index.removeAt(temp, directory: true)
                guard error == .fileExists else { throw SpoolError.io("Making the owner's index", dirPath, error) }
                continue  // made meanwhile by another change: lock that one
            }
            return (made, true)
        }
    }

    /// Adds `index/owners/<name>/<flowId>`. Call with the owner's lock held; what must be
    /// flushed joins `barrier`.
    func addToOwnerIndex(_ flow: FlowRecord, barrier: inout FlushSet) throws(SpoolError) {
        guard let ownerIndexFD else { return }  // readers scan; the next writer to open the spool rebuilds it
        try addToKeyedIndex(
            ownerIndexFD, at: path(.ownerIndex), name: OwnerKey.linkName(flow.ownerKey), entry: flow.flowId, flowId: flow.flowId,
            doing: "Indexing the flow under its owner in", nameIsDurable: true, barrier: &barrier)
    }

    /// Adds `<index>/<name>/<entry>` → `../../../flows/<flowId>`, making the directory `name`
    /// when it is new. Call with the spool locked (an owner's lock, at least, for the owner
    /// index); what must be flushed joins `barrier`: the index directory itself when `name`
    /// is new, and also, unless `nameIsDurable` (the whole spool is locked, or the owner's
    /// lock made the directory durable), when it was made meanwhile by a change that may not
    /// have flushed it yet.
    func addToKeyedIndex(
        _ index: FileDescriptor, at indexPath: FilePath, name: String, entry: String, flowId: String, doing: String, nameIsDurable: Bool,
        barrier: inout FlushSet
    ) throws(SpoolError) {
        var dirPath: FilePath { indexPath.appending(name) }
        let isNew = !nameIsDurable || (try? index.statusAt(name)) == nil
        let dir: FileDescriptor
        do {
            try index.makeDirectoryAt(name, existingIsFine: true)
            dir = try index.openDirectoryAt(name)
        } catch {
            throw SpoolError.io(doing, dirPath, error)
        }
        do { try dir.symlinkAt(entry, target: Layout.keyedIndexTarget(flowId), existingIsFine: true) } catch {
            dir.closeQuietly()
            throw SpoolError.io(doing, dirPath, error)
        }
        // Added once nothing more is made in it (a grouped barrier closes it at once).
        barrier.add(directory: dir, dirPath, owned: true)
        if isNew { barrier.add(directory: index, indexPath) }
        barrier.addSymlinks()
    }

    /// Adds `index/runs/<name>/<taskId>` for each new task with a run id (`name` is the run
    /// id encoded as an owner key is). Call with the spool locked (`wholeSpoolLocked` says
    /// how); what must be flushed joins `barrier`. A spool made before the run index has no `index/runs` until
    /// `fsck --repair` builds it; until then nothing is added and run ids are looked up by a scan.
    func indexRunIds(_ tasks: [TaskRecord], flowId: String, wholeSpoolLocked: Bool, barrier: inout FlushSet) throws(SpoolError) {
        let runs = Spool.runEntries(tasks)
        guard !runs.isEmpty, let (index, opened) = runIndex() else { return }
        if opened { barrier.add(directory: index, self.path(.runIndex), owned: true) }  // closed after the flush
        for run in runs {
            try addToKeyedIndex(
                index, at: path(.runIndex), name: run.name, entry: run.taskId, flowId: flowId, doing: "Indexing the task under its run id in",
                nameIsDurable: wholeSpoolLocked, barrier: &barrier)
        }
    }

    /// Removes the `index/runs` entries of `tasks` that name flow `flowId` (a pruned flow's),
    /// and run directories left empty; the directories changed join `barrier`. Root lock held.
    func unindexRunIds(_ tasks: [TaskRecord], flowId: String, barrier: inout FlushSet) {
        let runs = Spool.runEntries(tasks)
        guard !runs.isEmpty, let (index, opened) = runIndex() else { return }
        for run in runs {
            guard let dir = try? index.openDirectoryAt(run.name) else { continue }
            if (try? dir.readLinkAt(run.taskId)) == Layout.keyedIndexTarget(flowId) { try? dir.removeAt(run.taskId) }
            barrier.add(directory: dir, self.path(.runIndex).appending(run.name), owned: true)
            try? index.removeAt(run.name, directory: true)  // only succeeds when it was the run's last task
        }
        barrier.add(directory: index, self.path(.runIndex), owned: opened)
    }

    /// The `index/runs` entries `tasks` have: each task with a run id, and the run id's name there.
    static func runEntries(_ tasks: [TaskRecord]) -> [(taskId: String, name: String)] {
        tasks.compactMap { t in
            guard let runId = t.runId, !runId.isEmpty else { return nil }
            return (t.taskId, OwnerKey.linkName(runId))
        }
    }

    /// `index/runs`, or nil while it is missing (a spool made before the run index, or one
    /// whose index was deleted). The descriptor stays the spool's; `opened` is always false.
    func runIndex() -> (fd: FileDescriptor, opened: Bool)? {
        runIndexDirectory.fd.map { ($0, false) }
    }

    /// Calls `body` with `index/runs` when it exists and is complete (`Layout.runIndexComplete`).
    func withCompleteRunIndex<T>(_ body: (FileDescriptor) -> T) -> T? {
        guard let (fd, opened) = runIndex() else { return nil }
        defer { if opened { fd.closeQuietly() } }
        guard (try? fd.statusAt(Layout.runIndexComplete)) != nil else { return nil }
        return body(fd)
    }

    /// The tasks whose run id is `runId`: from `index/runs` when it is complete, else (and
    /// for the empty run id, which is never indexed) by reading every flow. Tasks whose
    /// file cannot be read are left out.
    public func tasks(withRunId runId: String) throws(SpoolError) -> [TaskRecord] {
        let indexed: [TaskRecord]? =
            runId.isEmpty
            ? nil
            : withCompleteRunIndex { index in
                guard let dir = try? index.openDirectoryAt(OwnerKey.linkName(runId)) else { return [] }
                defer { dir.closeQuietly() }
                return ((try? dir.entries()) ?? []).compactMap { entry -> TaskRecord? in
                    guard Identifier.isValid(entry.name), let flowId = (try? dir.readLinkAt(entry.name)).flatMap(Layout.flowId(fromKeyedIndex:)) else {
                        return nil
                    }
                    guard let task = try? readTask(flowId: flowId, taskId: entry.name), task.runId == runId else { return nil }
                    return task
                }
            }
        if let indexed { return indexed }
        return try allTasks().filter { $0.runId == runId }
    }

    /// The flow ids listed in `index/owners/<name>/`; without the index, every flow whose
    /// owner key has that name (a scan of every manifest).
    func ownerIndex(_ name: String) -> [String] {
        guard let ownerIndexFD else {
            return ((try? flowIds()) ?? []).filter { id in (try? readManifest(id)).map { OwnerKey.linkName($0.ownerKey) == name } ?? false }
        }
        guard let dir = try? ownerIndexFD.openDirectoryAt(name) else { return [] }
        defer { dir.closeQuietly() }
        return ((try? dir.entries()) ?? []).map(\.name).filter(Identifier.isValid)
    }

    // MARK: - Owner links (spool-layout.md, "Owner links")

    /// The flow the owner-key lookup rule picks for `key`, computed from the index and the
    /// manifests; `override` stands in for a flow whose new record is not written yet.
    func computeOwnerTarget(key: String, override: FlowRecord? = nil) -> String? {
        let name = OwnerKey.linkName(key)
        var ids = Set(ownerIndex(name))
        if let o = override { ids.insert(o.flowId) }
        var candidates: [(id: String, createdAt: Timestamp, isTerminal: Bool)] = []
        for id in ids {
            let record: FlowRecord
            if let o = override, o.flowId == id {
                record = o
            } else {
                guard let r = try? readManifest(id) else { continue }
                record = r
            }
            guard record.ownerKey == key else { continue }
            candidates.append((id, record.createdAt, record.isTerminal))
        }
        return Rules.ownerPick(candidates)
    }

    /// The flow `owners/<name>` points at, or nil when it is missing or not `../flows/<id>`.
    func ownerLinkTarget(_ name: String) -> String? { readOwnerLink(name).flowId }

    /// `owners/<name>` with one readlink: whether any entry is there, and the flow it names
    /// when it is a symlink whose text is `../flows/<id>`.
    func readOwnerLink(_ name: String) -> (present: Bool, flowId: String?) {
        guard let ownersFD else { return (false, nil) }
        do { return (true, Layout.flowId(fromOwnerLink: try ownersFD.readLinkAt(name))) } catch {
            return (error != .noSuchFileOrDirectory, nil)
        }
    }

    /// Whether an owner link update of `name` was interrupted (its marker is still there).
    func hasPendingOwnerLink(_ name: String) -> Bool {
        (try? ownersFD?.statusAt(Layout.pendingOwnerLink(name))) != nil
    }

    /// Whether ending `flow` leaves its owner's link as it is, by the rule and the records
    /// alone (`linkStays`). Asked under the owner's shared lock, it lets such a change (the
    /// common end of a job whose owner has newer ones) go on beside others of the same owner.
    func ownerLinkStays(whenEnding flow: FlowRecord) -> Bool {
        guard ownersFD != nil, flow.isTerminal else { return false }
        let name = OwnerKey.linkName(flow.ownerKey)
        return Spool.linkStays(whenEnding: flow, current: readOwnerLink(name).flowId, pending: hasPendingOwnerLink(name), exists: flowExists)
    }

    /// The rule's one shortcut: a flow that ends leaves the link as it is when the link names
    /// another flow, which exists, and no marker says the link may be behind (not so when a
    /// flow runs again, `retry`: it may then be the owner's newest unfinished flow).
    static func linkStays(whenEnding flow: FlowRecord, current: String?, pending: Bool, exists: (String) -> Bool) -> Bool {
        guard flow.isTerminal, let current, current != flow.flowId, !pending else { return false }
        return exists(current)
    }

    /// Before a write that may change which flow `flow`'s owner key resolves to: works out
    /// the new target and, when it differs, writes the marker `owners/.<name>.next` (the
    /// intent; owners/ joins `barrier`, which the caller flushes before the write). Call with
    /// the owner's lock held; `commitOwnerLinks` finishes after the write.
    func prepareOwnerLink(for flow: FlowRecord, isNew: Bool = false, barrier: inout FlushSet) throws(SpoolError) -> PendingOwnerLink? {
        guard let ownersFD else { return nil }  // no links: readers compute every pick
        let name = OwnerKey.linkName(flow.ownerKey)
        let link = readOwnerLink(name)
        let current = link.flowId
        let pending = hasPendingOwnerLink(name)
        // Under the owner's lock the current link is the rule's pick among the other flows, so
        // one comparison decides (a new flow's id may be older than a flow created meanwhile).
        // A link naming no flow is behind, like a marker.
        let target: String?
        if !isNew, Spool.linkStays(whenEnding: flow, current: current, pending: pending, exists: flowExists) {
            target = current
        } else if pending || current == nil || !flowExists(current!) {
            target = computeOwnerTarget(key: flow.ownerKey, override: flow)
        } else if isNew {
            if let cur = current, let record = try? readManifest(cur), record.ownerKey == flow.ownerKey {
                target = Rules.ownerPick([(cur, record.createdAt, record.isTerminal), (flow.flowId, flow.createdAt, flow.isTerminal)])
            } else {
                target = computeOwnerTarget(key: flow.ownerKey, override: flow)
            }
        } else {
            target = computeOwnerTarget(key: flow.ownerKey, override: flow)
        }
        guard let target, target != current || pending else { return nil }
        // A key's first link needs no marker: while it has none, readers compute the pick
        // from the owner's index, which holds this flow from barrier 1 on.
        if !pending, !link.present {
            return PendingOwnerLink(name: name, target: target, isFirst: true)
        }
        let marker = Layout.pendingOwnerLink(name)
        var ownersPath: FilePath { path(.owners) }
        do {
            if try !ownersFD.symlinkAt(marker, target: Layout.ownerLinkTarget(target), existingIsFine: true) {
                try ownersFD.removeAt(marker)
                try ownersFD.symlinkAt(marker, target: Layout.ownerLinkTarget(target))
            }
        } catch {
            throw SpoolError.io("Recording the owner link change in", ownersPath.appending(marker), error)
        }
        barrier.add(directory: ownersFD, ownersPath)
        barrier.addSymlinks()
        return PendingOwnerLink(name: name, target: target)
    }

    /// Renames each marker over its `owners/<name>`, or creates a key's first link;
    /// owners/ joins `barrier`, which the caller flushes.
    func commitOwnerLinks(_ changes: [PendingOwnerLink], barrier: inout FlushSet) throws(SpoolError) {
        guard !changes.isEmpty, let ownersFD else { return }
        var ownersPath: FilePath { path(.owners) }
        for change in changes {
            // A marker made before the write is flushed already; a first link is new here.
            if change.isFirst { barrier.addSymlinks() }
            do {
                let marker = Layout.pendingOwnerLink(change.name)
                let text = Layout.ownerLinkTarget(change.target)
                // A first link is created in place; should an entry have appeared under its
                // name meanwhile (not clawflow's: it holds the owner's lock), it is replaced
                // through the marker like any other change.
                if change.isFirst, try ownersFD.symlinkAt(change.name, target: text, existingIsFine: true) { continue }
                if change.isFirst, try !ownersFD.symlinkAt(marker, target: text, existingIsFine: true) {
                    try ownersFD.removeAt(marker)
                    try ownersFD.symlinkAt(marker, target: text)
                }
                try ownersFD.renameAt(marker, to: ownersFD, change.name)
            } catch {
                throw SpoolError.io("Moving the owner link", ownersPath.appending(change.name), error)
            }
        }
        barrier.add(directory: ownersFD, ownersPath)
    }

    /// Points `owners/<name>` of `key` at the flow the rule picks — `target` when the caller
    /// computed it, `nil` for none — or removes it when the owner has no flow left, and
    /// clears any marker, inside `tx`, which holds the spool lock.
    func rebuildOwnerLink(key: String, target computed: String?? = .none, in tx: Transaction) throws(SpoolError) {
        precondition(tx.holdsSpoolLock, "owner links change under the spool lock")
        guard let ownersFD else { return }  // no links at all: readers compute every pick
        let name = OwnerKey.linkName(key)
        var ownersPath: FilePath { path(.owners) }
        if let target = computed ?? computeOwnerTarget(key: key) {
            if ownerLinkTarget(name) != target {
                try tx.replaceLink(name, target: Layout.ownerLinkTarget(target), in: ownersFD, at: ownersPath)
            }
        } else if (try? ownersFD.statusAt(name)) != nil {
            do { try ownersFD.removeAt(name) } catch { throw SpoolError.io("Removing the owner link", ownersPath.appending(name), error) }
        }
        if hasPendingOwnerLink(name) {
            do { try ownersFD.removeAt(Layout.pendingOwnerLink(name)) } catch {
                throw SpoolError.io("Removing the owner link marker", ownersPath.appending(Layout.pendingOwnerLink(name)), error)
            }
        }
        tx.barrier.add(directory: ownersFD, ownersPath)
    }

    /// The flow an owner key resolves to by reading its link (one readlink and the manifest
    /// it names; the index only when the link is behind: a marker is there, the link names a
    /// flow that does not exist or of another owner, or the key has no link yet), or nil
    /// when the key has no flows. A flow it returns existed when it looked.
    public func flowId(forOwner key: String) -> String? {
        let name = OwnerKey.linkName(key)
        if hasPendingOwnerLink(name) { return computeOwnerTarget(key: key) }
        let link = readOwnerLink(name)
        guard let target = link.flowId else {
            return link.present ? nil : computeOwnerTarget(key: key)  // a malformed link is never followed
        }
        // A link is trusted only when the flow it names carries this owner key: one planted
        // to point at another owner's flow is not followed.
        guard flowExists(target) else { return computeOwnerTarget(key: key) }
        do {
            return try readManifest(target).ownerKey == key ? target : computeOwnerTarget(key: key)
        } catch {
            return target  // unreadable: the caller reads it and reports the record
        }
    }
}
