import ClawflowModel
import Glibc
import SystemPackage

/// What one pass over the drop box did.
public struct IngestReport: Sendable, Equatable {
    /// Drops applied (new tasks and task updates).
    public var applied = 0
    /// Drops whose name was applied in the last 7 days: deleted, not applied again.
    public var repeats = 0
    /// Drops moved to rejected/ with a reason.
    public var rejected = 0
    /// `task-update` drops left waiting for their task to appear.
    public var waiting = 0
    /// Claims of an interrupted pass that this pass finished.
    public var recovered = 0
    /// The flows this pass created, each with whether it was created finished: their records
    /// were derived as they were written, so a watcher need not read them back.
    public var createdFlows: [String: Bool] = [:]
}

/// The drop box (spool-layout.md, "Drop box"): other programs rename JSON files into
/// `incoming/new/`; each is claimed by a second name in `incoming/claimed/` that carries the
/// ids it will create, applied through the one mutation path, recorded in
/// `incoming/applied/` with its digest, and deleted. A replay after a crash finds the ids
/// already there.
extension Spool {
    /// Largest drop accepted (1 MiB).
    public static let dropLimit = 1_048_576
    /// How long a `task-update` for an unknown task waits for its task (60 s).
    public static let updateWaitMilliseconds: Int64 = 60_000
    /// How long an applied drop name is remembered (7 days).
    public static let repeatWindowMilliseconds: Int64 = 7 * 86_400_000

    /// One pass over the drop box: finish the claims an interrupted pass left, then take every
    /// drop in arrival order (modification time, then name). New-flow drops are created in
    /// batches that share one transaction; anything else is applied alone, after the batch
    /// before it, so drops still take effect in arrival order. Passes are serialised by a lock
    /// on `incoming/claimed/`.
    public func ingest(now: Timestamp = Spool.now()) throws(SpoolError) -> IngestReport {
        let box = try DropBox(spool: self)
        defer { box.close() }
        do { try box.claimed.lock() } catch { throw SpoolError.io("Locking the drop box", box.claimedPath, error) }
        var report = IngestReport()
        for entry in (try? box.claimed.entries()) ?? [] where !entry.name.hasPrefix(".") {
            guard let claim = Claim(fileName: entry.name) else { continue }
            try recover(claim, box: box, report: &report)
            try box.settle(force: false)
        }
        // Arrival order is the drops' modification times (then names); how long one has been
        // here is told by its ctime, which the kernel set when it was renamed in and no
        // program can move (a drop dated a year ahead still waits a minute, no more).
        let arrivals: [Arrival]
        do {
            arrivals = try box.new.entries().compactMap { entry in
                guard !entry.name.hasPrefix("."), let st = try? box.new.statusAt(entry.name) else { return nil }
                return Arrival(name: entry.name, mtime: st.modifiedMilliseconds, arrived: st.changedMilliseconds)
            }.sorted { ($0.mtime, $0.name) < ($1.mtime, $1.name) }
        } catch {
            throw SpoolError.io("Listing", box.newPath, error)
        }
        var batch = NewFlowBatch()
        var waiting: [Arrival] = []
        for arrival in arrivals {
            if try take(arrival, now: now, box: box, batch: &batch, report: &report) == .waiting { waiting.append(arrival) }
            try box.settle(force: false)
        }
        try createFlows(of: &batch, box: box, report: &report)
        // An update that came before its task's drop (in the same instant, sorted by name)
        // waited for a task this pass has applied since: it gets one more try now.
        if !waiting.isEmpty, report.applied > 0 {
            report.waiting -= waiting.count
            for arrival in waiting {
                try take(arrival, now: now, box: box, batch: &batch, report: &report)
                try box.settle(force: false)
            }
            try createFlows(of: &batch, box: box, report: &report)
        }
        try box.settle(force: true)
        return report
    }

    /// Whether `<root>/incoming/new` holds a drop (a name not starting with `.`), whether or
    /// not `root` is a spool yet.
    public static func dropsWaiting(at root: FilePath) -> Bool {
        guard let dir = try? FileDescriptor.currentDirectory.openDirectoryAt(SpoolDirectory.newDrops.path(in: root).string) else { return false }
        defer { dir.closeQuietly() }
        return ((try? dir.entries()) ?? []).contains { !$0.name.hasPrefix(".") }
    }

    /// Most new-flow drops created in one transaction. Their barriers are one syncfs each,
    /// and a batch holds no descriptors open, so the cap only bounds how long the first
    /// drop of a burst waits for its batch.
    static let dropBatchLimit = 512

    /// A batch of at least this many flows is flushed with syncfs (`Transaction(grouped:)`);
    /// a smaller one with an fsync per object, which costs less when there are few.
    static let groupCommitMinimum = 8

    /// A drop seen in `incoming/new`: its name, modification time (arrival order) and ctime
    /// (when it was renamed in).
    private struct Arrival {
        var name: String
        var mtime: Int64
        var arrived: Int64
    }

    /// What `take` did with a drop.
    private enum Taken { case done, waiting }

    /// Reads, checks and claims one drop, then applies it alone or adds it to `batch`.
    @discardableResult
    private func take(_ arrival: Arrival, now: Timestamp, box: DropBox, batch: inout NewFlowBatch, report: inout IngestReport) throws(SpoolError) -> Taken {
        let name = arrival.name
        let drop: Drop
        do {
            drop = try readDrop(name: name, box: box)
        } catch let rejection as DropRejection {
            try reject(name: name, from: box.new, box: box, code: rejection.code, message: rejection.message, report: &report)
            return .done
        } catch {
            return .done  // vanished meanwhile (another pass took it)
        }
        // A new-flow drop joins the batch; anything else is applied after the batch, alone.
        var newFlow: Drop.NewTaskDrop?
        if case .task(let task) = drop.kind, task.parentFlowId == nil { newFlow = task }
        if let newFlow, batch.admits(newFlow) {} else { try createFlows(of: &batch, box: box, report: &report) }
        // A name applied in the last 7 days is a repeat: note it, delete it. A record whose
        // flow does not exist was written beside a claim that a crash undid (the drop is
        // back here, unapplied): it is not a repeat, and the claim below replaces it.
        // Only the same bytes are a replay: other content under a used name is refused, so
        // that a writer that reuses names learns it instead of losing its reports.
        if let record = box.appliedRecord(Layout.appliedRecordName(name, uid: drop.uid), now: now), flowExists(record.flowId) {
            if let digest = record.digest, digest != drop.digest {
                try reject(
                    name: name, from: box.new, box: box, code: "repeated_name",
                    message:
                        "the name \(name) was applied to flow \(record.flowId) in the last 7 days with other content, so this drop was not applied; a drop's name is its idempotency key, so give every drop a name of its own (put a counter or a timestamp in it)",
                    report: &report)
                return .done
            }
            _ = try? mutate(flow: record.flowId, source: "drop:" + name) { (change) throws(SpoolError) in
                change.log(["event": "drop", "name": .string(name), "repeat": true])
            }
            box.retire(name, in: box.new)
            try? box.new.removeAt(name)
            report.repeats += 1
            return .done
        }
        var claim: Claim
        switch try plan(drop, name: name, arrived: arrival.arrived, now: now) {
        case .wait:
            report.waiting += 1
            return .waiting
        case .reject(let rejection):
            try reject(name: name, from: box.new, box: box, code: rejection.code, message: rejection.message, report: &report)
            return .done
        case .claim(let planned):
            claim = planned
        }
        claim.digest = drop.digest
        claim.uid = drop.uid
        guard try box.claim(claim) else { return .done }  // another pass claimed it
        if let newFlow {
            // Its applied record, flushed in the batch's first barrier, fixes the flow id
            // before the flow can be durable; the claim is not flushed.
            batch.add(claim, newFlow)
            return .done
        }
        // The claim is flushed in the first barrier of the change, before any of it can be
        // durable. incoming/new needs no flush: should a power cut bring back the drop's name
        // there beside its claim, the claim is finished first (recording the name as applied)
        // and the name is then deleted as a repeat.
        try finish(claim, drop: drop, box: box, report: &report)
        return .done
    }

    /// Creates the flows of a batch of claimed new-flow drops in one transaction — their
    /// applied records and staged flows share its first barrier, the renames its last — then
    /// deletes the claims; empties the batch.
    private func createFlows(of batch: inout NewFlowBatch, box: DropBox, report: inout IngestReport) throws(SpoolError) {
        guard !batch.items.isEmpty else { return }
        let items = batch.items
        batch = NewFlowBatch()
        let drafts = items.map { claim, drop in
            var task = drop.newTask
            task.taskId = claim.taskId
            task[.lastDrop] = .string(claim.name)
            if let uid = claim.uid { task[.dropUid] = .int(Int64(uid)) }
            return Spool.oneTaskFlow(ownerKey: drop.ownerKey ?? "", task: task, goal: nil, flowId: claim.flowId, source: "drop:" + claim.name)
        }
        // The applied records are written first and flushed in the first barrier, before any
        // of the flows can be durable: each records the name's flow id, so the claims
        // themselves need no flush (spool-layout.md, "Exactly once"). A crash can leave a
        // record durable without its flow; such a record names no flow and is not taken for
        // a repeat.
        let tx = Transaction(self, grouped: items.count >= Spool.groupCommitMinimum)
        try box.recordApplied(items.map(\.claim), in: tx)
        let results = try create(drafts, in: tx)
        try tx.end()
        for ((claim, _), result) in zip(items, results) {
            switch result {
            case .success(let snapshot):
                box.releaseDropName(claim)
                try box.removeClaim(claim)
                report.applied += 1
                report.createdFlows[snapshot.flow.flowId] = snapshot.flow.isTerminal
            case .failure(let error):
                let code = error.code == .linkRefused ? "reused_task_id" : "bad_fields"
                try refuse(claim, box: box, code: code, message: error.message, report: &report)
            }
        }
    }

    /// Finishes a claim an interrupted pass left: reads its drop back and applies it.
    private func recover(_ claim: Claim, box: DropBox, report: inout IngestReport) throws(SpoolError) {
        if box.isStaleClaim(claim, now: Spool.now()) {
            // Its drop was applied (the record says so), and the name now holds another file.
            try? box.claimed.removeAt(claim.fileName)
            return
        }
        var claim = claim
        let drop: Drop
        do {
            drop = try readDrop(name: claim.fileName, box: box, directory: box.claimed)
        } catch let rejection as DropRejection {
            try refuse(claim, box: box, code: rejection.code, message: rejection.message, report: &report)
            return
        } catch {
            return
        }
        claim.digest = drop.digest
        claim.uid = drop.uid
        if try finish(claim, drop: drop, box: box, report: &report) { report.recovered += 1 }
    }

    /// Applies one claimed drop in a transaction of its own (idempotently: the ids in its
    /// claim tell whether it already was), records its name as applied in the same
    /// transaction's last barrier, and deletes the claim. Returns whether it was applied.
    @discardableResult
    private func finish(_ claim: Claim, drop: Drop, box: DropBox, report: inout IngestReport) throws(SpoolError) -> Bool {
        let tx = Transaction(self)
        tx.barrier.add(directory: box.claimed, box.claimedPath)
        do {
            try write(drop, claim: claim, in: tx)
        } catch let rejection as DropRejection {
            tx.discardStaged()
            try refuse(claim, box: box, code: rejection.code, message: rejection.message, report: &report)
            return false
        } catch {
            throw error as? SpoolError ?? SpoolError(.io, "Applying drop \(claim.name): \(error)")
        }
        try box.recordApplied([claim], in: tx)
        try tx.end()
        box.releaseDropName(claim)
        try box.removeClaim(claim)
        report.applied += 1
        return true
    }

    // MARK: - Reading and validating a drop

    /// Reads and validates one drop without following a symlink or blocking on a FIFO.
    private func readDrop(name: String, box: DropBox, directory: FileDescriptor? = nil) throws -> Drop {
        let dir = directory ?? box.new
        let dropName = Claim(fileName: name)?.name ?? name
        guard DropName.isValid(dropName) else {
            throw DropRejection(
                code: "bad_name", message: "the name \"\(sanitized(dropName))\" breaks the drop name rule [A-Za-z0-9._-]{1,128}, not starting with a dot")
        }
        var st = try dir.statusAt(name)
        guard st.kind == .regular else {
            throw DropRejection(code: "not_regular_file", message: "the drop is a \(st.kind.word), not a regular file; clawflow does not follow or open it")
        }
        // A claim's second name is its own name in incoming/new, kept until its change is
        // durable; any other second name is a hard link.
        let claimLinks: UInt64 = directory != nil && box.isOwnName(dropName, of: st) ? 2 : 1
        // Except the drop's own name in incoming/tmp: the reporter's rename into incoming/new,
        // half undone by a power cut where metadata is not ordered (spool-layout.md, "Drop box").
        if st.linkCount > claimLinks, box.removeRenameLeftover(dropName, of: st) { st = try dir.statusAt(name) }
        guard st.linkCount == claimLinks else {
            throw DropRejection(
                code: "hard_link", message: "the drop has \(st.linkCount) hard links; a drop must be a file of its own (write it, then rename it)")
        }
        guard st.size <= Spool.dropLimit else {
            throw DropRejection(code: "too_large", message: "the drop is \(st.size) bytes, over the \(Spool.dropLimit)-byte limit")
        }
        let fd: FileDescriptor
        do { fd = try dir.openAt(name, .readOnly, options: [.noFollow, .nonBlocking]) } catch {
            if error == .permissionDenied || error == .notPermitted {
                throw DropRejection(
                    code: "unreadable", message: "clawflow cannot read the drop (\(error)); make it readable by the spool's owner, mode 0644 or 0640")
            }
            throw error
        }
        defer { fd.closeQuietly() }
        let opened = try fd.status()
        guard opened.kind == .regular, opened.linkCount == claimLinks || opened.linkCount == 1 else {
            throw DropRejection(code: "not_regular_file", message: "the drop changed into a \(opened.kind.word) while it was being read")
        }
        let bytes: [UInt8]
        do { bytes = try fd.readToEnd(limit: Spool.dropLimit, sizeHint: Int(opened.size)) } catch {
            if error == .fileTooLarge { throw DropRejection(code: "too_large", message: "the drop is over the \(Spool.dropLimit)-byte limit") }
            throw error
        }
        let value: JSON
        do { value = try JSON.parse(bytes: bytes) } catch {
            throw DropRejection(code: "not_json", message: "the drop is not valid JSON: \(error.description)")
        }
        guard let object = value.objectValue else {
            throw DropRejection(code: "not_json", message: "the drop is a JSON \(value.kindName), not an object")
        }
        var drop = try Drop(object)
        drop.digest = SHA256.hex(bytes)
        drop.uid = opened.owner == geteuid() ? nil : opened.owner
        // A job's own hook runs as the user who delivers it, the spool's owner: only the
        // owner's drops may name one (README.md, "Notification hooks").
        if drop.uid != nil, object[RecordKey.notifyCommand.rawValue] != nil {
            throw DropRejection(
                code: "bad_fields",
                message: "\"notifyCommand\" is accepted only in drops of the spool's owner (uid \(geteuid())): a hook runs as the user who delivers it")
        }
        return drop
    }

    // MARK: - Planning and writing

    /// What to do with a drop, decided from what it says and what the spool holds.
    private enum Plan {
        /// Claim it under a name carrying the ids it will create or change.
        case claim(Claim)
        /// An update whose task is not known yet: it stays in incoming/new for a later pass.
        case wait
        /// Refuse it, with the reason.
        case reject(DropRejection)
    }

    /// The ids a drop will create or change, or why it waits or is refused.
    private func plan(_ drop: Drop, name: String, arrived: Int64, now: Timestamp) throws(SpoolError) -> Plan {
        switch drop.kind {
        case .task(let task):
            let taskId = task.taskId ?? Spool.newId(at: now)
            if task.taskId != nil, let holder = taskIndexTarget(taskId), taskFileExists(flowId: holder, taskId: taskId) {
                return .reject(DropRejection(code: "reused_task_id", message: "task id \(taskId) is already used by a task of flow \(holder)"))
            }
            let flowId: String
            let ownerKey: String
            if let parent = task.parentFlowId {
                guard flowExists(parent) else {
                    return .reject(DropRejection(code: "link_refused", message: "parent flow \(parent) does not exist"))
                }
                let snap = try readFlow(parent)
                if let reason = Rules.linkRefusal(flow: snap.flow, taskCount: snap.tasks.count, ownerKey: task.ownerKey) {
                    return .reject(DropRejection(code: "link_refused", message: reason))
                }
                (flowId, ownerKey) = (parent, snap.flow.ownerKey)
            } else {
                (flowId, ownerKey) = (Spool.newId(at: now), task.ownerKey ?? "")
            }
            if let refusal = Spool.unreadableRecords(task, name: name, taskId: taskId, flowId: flowId, ownerKey: ownerKey) { return .reject(refusal) }
            return .claim(Claim(name: name, taskId: taskId, flowId: flowId))
        case .update(let update):
            if let taskId = update.taskId {
                if let flowId = taskIndexTarget(taskId), taskFileExists(flowId: flowId, taskId: taskId) {
                    return .claim(Claim(name: name, taskId: taskId, flowId: flowId))
                }
            } else if let runId = update.runId, let pick = Rules.runIdPick(try tasks(withRunId: runId)) {
                return .claim(Claim(name: name, taskId: pick.taskId, flowId: pick.parentFlowId))
            }
            if now.milliseconds - arrived < Spool.updateWaitMilliseconds { return .wait }
            let what = update.taskId.map { "task \($0)" } ?? "run id \"\(sanitized(update.runId ?? ""))\""
            return .reject(DropRejection(code: "unknown_task", message: "\(what) was still unknown a minute after the update arrived"))
        }
    }

    /// Why a `task` drop would be refused because clawflow could not read back the task
    /// record (or, without a parent, its new flow's manifest) once written; nil when it could.
    static func unreadableRecords(_ task: Drop.NewTaskDrop, name: String, taskId: String, flowId: String, ownerKey: String) -> DropRejection? {
        var new = task.newTask
        new.taskId = taskId
        new[.lastDrop] = .string(name)
        // The records as the creation would write them (the task, and a new flow's manifest).
        let draft = Spool.oneTaskFlow(ownerKey: ownerKey.isEmpty ? "-" : ownerKey, task: new, goal: nil, flowId: flowId, source: "drop:" + name)
        var record = draft.tasks[0]
        record.flowRevision = 0
        if let problem = unreadableProblem(record, bytes: record.fileBytes()) {
            return DropRejection(code: "too_large", message: "the task it reports \(problem)")
        }
        if task.parentFlowId == nil, let problem = unreadableProblem(draft.flow, bytes: draft.flow.fileBytes()) {
            return DropRejection(code: "too_large", message: "the flow it makes \(problem)")
        }
        return nil
    }

    /// Writes the change a claimed drop makes, inside `tx`, once: a task that exists already,
    /// or an update already recorded in its task's `lastDrop`, is a replay and changes nothing.
    private func write(_ drop: Drop, claim: Claim, in tx: Transaction) throws {
        let source = "drop:" + claim.name
        switch drop.kind {
        case .task(let task):
            if taskFileExists(flowId: claim.flowId, taskId: claim.taskId) { return }
            var new = task.newTask
            new.taskId = claim.taskId
            new[.lastDrop] = .string(claim.name)
            if let uid = claim.uid { new[.dropUid] = .int(Int64(uid)) }
            if task.parentFlowId != nil {
                do { _ = try addTask(toFlow: claim.flowId, ownerKey: task.ownerKey, task: new, source: source, in: tx) } catch {
                    if error.code == .linkRefused || error.code == .notFound { throw DropRejection(code: "link_refused", message: error.message) }
                    throw error
                }
            } else {
                guard let owner = task.ownerKey else { throw DropRejection(code: "bad_fields", message: "a task drop without parentFlowId needs an ownerKey") }
                if flowExists(claim.flowId) { return }
                let draft = Spool.oneTaskFlow(ownerKey: owner, task: new, goal: nil, flowId: claim.flowId, source: source)
                if case .failure(let error) = try create([draft], in: tx)[0] {
                    if error.code == .linkRefused { throw DropRejection(code: "reused_task_id", message: error.message) }
                    throw error
                }
            }
        case .update(let update):
            var refusal: DropRejection?
            do throws(SpoolError) {
                try self.update(update, claim: claim, source: source, in: tx, refusal: &refusal)
            } catch {
                // Refused with its reason rather than left claimed for ever.
                if error.code == .invalidRecord { throw DropRejection(code: "bad_fields", message: error.message) }
                throw error
            }
            if let refusal { throw refusal }
        }
    }

    /// Applies an update drop to its task through the one mutation path, inside `tx` (a
    /// replay of an applied drop changes nothing).
    /// A refused update (`refusal` set) changes nothing: a command task's state belongs to the
    /// supervisor that runs it, a task reported by one user's drops is changed only by that
    /// user's drops, and no update may make its task's record unreadable.
    private func update(_ update: Drop.UpdateDrop, claim: Claim, source: String, in tx: Transaction, refusal: inout DropRejection?) throws(SpoolError) {
        _ = try change(flow: claim.flowId, source: source, in: tx) { (change) throws(SpoolError) in
            guard var task = change.tasks[claim.taskId] else { throw taskNotFound(claim.taskId) }
            if task.lastDrop == claim.name { return }  // replay of an applied drop
            if task.isCommand {
                refusal = DropRejection(
                    code: "command_task",
                    message: "task \(claim.taskId) is a command clawflow runs (runtime cli); its state is recorded by its supervisor, not by drops")
                return
            }
            let reporter = task.dropUid.map(UInt32.init(truncatingIfNeeded:))
            if reporter != claim.uid {
                let who = reporter.map { "uid \($0)" } ?? "the spool's owner"
                refusal = DropRejection(
                    code: "not_reporter",
                    message: "task \(claim.taskId) was reported by \(who); a drop of \(claim.uid.map { "uid \($0)" } ?? "the spool's owner") may not change it")
                return
            }
            switch Rules.apply(update.update, to: &task, at: change.now) {
            case .applied:
                task.lastDrop = claim.name
                if let problem = Spool.unreadableProblem(task, bytes: task.fileBytes()) {
                    refusal = DropRejection(code: "too_large", message: "task \(claim.taskId) with this update \(problem)")
                    return
                }
                change.tasks[claim.taskId] = task
            case .ignored(let reason):
                var event: [String: JSON] = ["event": "ignored", "taskId": .string(claim.taskId), "reason": .string(reason), "drop": .string(claim.name)]
                if let s = update.update.status { event["status"] = .string(s.rawValue) }
                change.log(event)
            }
        }
    }

    // MARK: - Rejecting

    /// Moves a drop (as it is: a symlink stays a symlink) to rejected/ with a `.reason` file.
    /// Refuses a claimed drop: moves it to rejected/ under its drop name and removes its
    /// applied record, since the name was never applied.
    private func refuse(_ claim: Claim, box: DropBox, code: String, message: String, report: inout IngestReport) throws(SpoolError) {
        box.releaseDropName(claim)
        try reject(name: claim.fileName, from: box.claimed, box: box, code: code, message: message, report: &report, originalName: claim.name)
        try box.forgetApplied(claim)
    }

    private func reject(
        name: String, from dir: FileDescriptor, box: DropBox, code: String, message: String, report: inout IngestReport, originalName: String? = nil
    ) throws(SpoolError) {
        let shown = originalName ?? name
        let base = DropName.isValid(shown) ? shown : "badname-" + SHA256.hex(Array(shown.utf8)).prefix(16)
        guard let st = try? dir.statusAt(name) else { return }  // vanished meanwhile
        var note = ""
        var leftInPlace = false
        let target: String
        if st.owner == geteuid() || st.kind == .symlink {
            // Ours (or only a name): moved as it is, unopened.
            guard let moved = try box.move(name, from: dir, base: base) else { return }
            target = moved
        } else {
            // Another user's (a member of a shared spool's group): nothing it controls enters
            // clawflow's private tree, where it could keep writing through a descriptor. Its
            // bytes are copied out, or the entry is removed, or, when neither is possible, it
            // is left where it is and reported once (spool-layout.md, "Who may do what").
            let marker = "inplace-\(base).\(st.inode)"
            if (try? box.rejected.statusAt(marker)) != nil { return }  // reported already
            if st.kind == .regular, let bytes = box.readPrefix(name, in: dir, limit: Spool.dropLimit) {
                target = try box.keep(bytes, base: base)
                try? dir.removeAt(name)
                note =
                    " The file belonged to uid \(st.owner), so its bytes were copied here"
                    + (Int64(bytes.count) < st.size ? " (the first \(bytes.count) of \(st.size))" : "") + " and it was removed from the drop box."
            } else if (try? dir.removeAt(name, directory: st.kind == .directory)) != nil {
                target = try box.keep([], base: base)
                note = " It was a \(st.kind.word) of uid \(st.owner), which clawflow does not keep: it was removed from the drop box."
            } else {
                target = try box.keep([], base: marker)
                leftInPlace = true
                note =
                    " It is a \(st.kind.word) of uid \(st.owner) that clawflow can neither read, move nor remove: it is left in \(dir == box.new ? "incoming/new" : "incoming/claimed") and not looked at again."
            }
        }
        var reason: [String: JSON] = [
            "code": .string(code), "message": .string(message + note), "name": .string(shown), "at": .string(Spool.now().description),
        ]
        if leftInPlace { reason["inode"] = .int(Int64(st.inode)) }
        try DurableFile.replace(
            in: box.rejected, name: target + ".reason", bytes: Array((JSON.object(JSONObject(reason)).pretty() + "\n").utf8), directoryPath: box.rejectedPath)
        try DurableFile.sync(dir, box.newPath)
        report.rejected += 1
    }
}

/// A claimed drop's file name in `incoming/claimed/`: `<name>#<taskId>#<flowId>` ('#' never
/// occurs in a drop name).
struct Claim {
    var name: String
    var taskId: String
    var flowId: String
    /// The SHA-256 of the drop's bytes, once read (not part of the file name).
    var digest = ""
    /// The drop's owner when not clawflow's user (from the file, not part of its name).
    var uid: UInt32?
    /// The name of its record in `incoming/applied/`.
    var recordName: String { Layout.appliedRecordName(name, uid: uid) }

    var fileName: String { "\(name)#\(taskId)#\(flowId)" }

    init(name: String, taskId: String, flowId: String) {
        self.name = name
        self.taskId = taskId
        self.flowId = flowId
    }

    init?(fileName: String) {
        let parts = fileName.split(separator: "#", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, Identifier.isValid(parts[1]), Identifier.isValid(parts[2]) else { return nil }
        (name, taskId, flowId) = (parts[0], parts[1], parts[2])
    }
}

/// The open directories of the drop box for one pass.
struct DropBox {
    let new: FileDescriptor
    let claimed: FileDescriptor
    let applied: FileDescriptor
    let rejected: FileDescriptor
    /// incoming/tmp, where reporters write their drops (nil if it cannot be opened).
    let tmp: FileDescriptor?
    /// Whether the spool's filesystem orders its metadata (`MetadataOrdering`); if not, the
    /// inodes of finished drops are held open until the removal of their names is durable.
    let ordered: Bool
    private let retired = RetiredDrops()
    let newPath: FilePath
    let claimedPath: FilePath
    let appliedPath: FilePath
    let rejectedPath: FilePath
    let tmpPath: FilePath

    init(spool: Spool) throws(SpoolError) {
        let root = spool.root
        newPath = spool.path(.newDrops)
        claimedPath = spool.path(.claimedDrops)
        appliedPath = spool.path(.appliedDrops)
        rejectedPath = spool.path(.rejected)
        tmpPath = spool.path(.dropStaging)
        // A spool made before the drop box had incoming/claimed and incoming/applied got them
        // when it was opened for writing (`completeLayout`).
        do {
            new = try spool.rootFD.openDirectoryAt(SpoolDirectory.newDrops.rawValue)
            claimed = try spool.rootFD.openDirectoryAt(SpoolDirectory.claimedDrops.rawValue)
            applied = try spool.rootFD.openDirectoryAt(SpoolDirectory.appliedDrops.rawValue)
            rejected = try spool.rootFD.openDirectoryAt(SpoolDirectory.rejected.rawValue)
            tmp = try? spool.rootFD.openDirectoryAt(SpoolDirectory.dropStaging.rawValue)
            ordered = MetadataOrdering.isOrdered(new)
        } catch {
            throw SpoolError.io("Opening the drop box of", root, error)
        }
    }

    func close() {
        for fd in [new, claimed, applied, rejected] { fd.closeQuietly() }
        tmp?.closeQuietly()
        for fd in retired.fds { fd.closeQuietly() }
        retired.fds = []
    }

    /// The flow a name was applied to within the repeat window, and the digest of what was
    /// applied (nil in a record of an older clawflow), or nil.
    func appliedRecord(_ name: String, now: Timestamp) -> (flowId: String, digest: String?)? {
        guard let st = try? applied.statusAt(name), now.milliseconds - st.modifiedMilliseconds < Spool.repeatWindowMilliseconds,
            let text = try? applied.readLinkAt(name)
        else { return nil }
        return Layout.appliedRecord(text)
    }

    /// Records `incoming/applied/<name>` -> `../../flows/<flowId>#<sha256>` for each claim;
    /// the directory joins the barrier of `tx`.
    func recordApplied(_ claims: [Claim], in tx: Transaction) throws(SpoolError) {
        guard !claims.isEmpty else { return }
        for claim in claims {
            do {
                let text = Layout.appliedRecord(flowId: claim.flowId, digest: claim.digest)
                if try !applied.symlinkAt(claim.recordName, target: text, existingIsFine: true) {
                    try applied.removeAt(claim.recordName)
                    try applied.symlinkAt(claim.recordName, target: text)
                }
            } catch {
                throw SpoolError.io("Recording the applied drop", appliedPath.appending(claim.recordName), error)
            }
        }
        tx.barrier.add(directory: applied, appliedPath)
        tx.barrier.addSymlinks()
    }

    /// Claims a drop: gives it a second name, in `incoming/claimed/`, that carries the ids it
    /// will create or change. Returns false when the drop is gone (another pass claimed it).
    /// The claim is a link, not a rename: a rename between two directories is not atomic on
    /// an ext4 without a journal, where a power cut can keep both names or neither. The drop
    /// keeps its name in incoming/new until its change is durable, so at every instant one
    /// name at least holds it (spool-layout.md, "Exactly once").
    func claim(_ claim: Claim) throws(SpoolError) -> Bool {
        do {
            do {
                try new.linkAt(claim.name, to: claimed, claim.fileName)
            } catch  where error == .notPermitted {
                // Another user's file, which the kernel will not let us link
                // (fs.protected_hardlinks): it is claimed by a rename instead.
                try new.renameAt(claim.name, to: claimed, claim.fileName, flags: .noReplace)
            }
        } catch {
            if error == .noSuchFileOrDirectory { return false }
            throw SpoolError.io("Claiming the drop", newPath.appending(claim.name), error)
        }
        return true
    }

    /// Removes the applied record of a claim that was refused, if the record is the claim's
    /// (it names the claim's flow), and flushes: the name was never applied.
    func forgetApplied(_ claim: Claim) throws(SpoolError) {
        guard let text = try? applied.readLinkAt(claim.recordName), Layout.appliedRecord(text)?.flowId == claim.flowId else { return }
        do {
            try applied.removeAt(claim.recordName)
        } catch {
            if error == .noSuchFileOrDirectory { return }
            throw SpoolError.io("Removing the applied record of the refused drop", appliedPath.appending(claim.recordName), error)
        }
        try DurableFile.sync(applied, appliedPath)
    }

    /// Whether `incoming/new/<name>` is the file `claim` describes (the same inode): the
    /// drop's own name, kept beside its claim until the claim is finished.
    func isOwnName(_ name: String, of claim: FileStatus) -> Bool {
        guard let st = try? new.statusAt(name) else { return false }
        return st.inode == claim.inode && st.device == claim.device
    }

    /// Removes `incoming/tmp/<name>` when it is the file `drop` describes (the same inode):
    /// the reporter renamed it into incoming/new, and on a filesystem that does not order its
    /// metadata a power cut can keep both names of a rename. Returns whether it did.
    func removeRenameLeftover(_ name: String, of drop: FileStatus) -> Bool {
        guard let tmp, let st = try? tmp.statusAt(name), st.inode == drop.inode, st.device == drop.device else { return false }
        do { try tmp.removeAt(name) } catch { return false }
        return true
    }

    /// Removes the drop's own name from `incoming/new` once its claim is finished or refused
    /// (only when it is still the claimed file). No flush: a name a power cut brings back is
    /// a repeat of an applied drop, or the second name of a claim, which the next pass removes.
    func releaseDropName(_ claim: Claim) {
        guard let st = try? claimed.statusAt(claim.fileName), st.linkCount > 1, isOwnName(claim.name, of: st) else { return }
        try? new.removeAt(claim.name)
    }

    /// Renames `name` from `dir` into rejected/ as it is, under `base` or, when that is
    /// taken, a name made unique; nil when it vanished meanwhile.
    func move(_ name: String, from dir: FileDescriptor, base: String) throws(SpoolError) -> String? {
        var target = base
        var attempt = 0
        while true {
            do {
                try dir.renameAt(name, to: rejected, target, flags: .noReplace)
                return target
            } catch {
                if error == .noSuchFileOrDirectory { return nil }
                guard error == .fileExists, attempt < 100 else { throw SpoolError.io("Moving the refused drop to", rejectedPath.appending(target), error) }
                attempt += 1
                target = "\(base).\(Spool.now().milliseconds).\(attempt)"
            }
        }
    }

    /// Writes `bytes` as a new file of clawflow's in rejected/ under `base` (made unique when
    /// taken), flushed; returns its name.
    func keep(_ bytes: [UInt8], base: String) throws(SpoolError) -> String {
        var target = base
        for attempt in 1...100 {
            if (try? rejected.statusAt(target)) == nil { break }
            target = "\(base).\(Spool.now().milliseconds).\(attempt)"
        }
        try DurableFile.replace(in: rejected, name: target, bytes: bytes, directoryPath: rejectedPath)
        return target
    }

    /// The first `limit` bytes of another user's file, or nil when clawflow may not read it
    /// (opened without following a symlink or blocking on a FIFO).
    func readPrefix(_ name: String, in dir: FileDescriptor, limit: Int) -> [UInt8]? {
        guard let fd = try? dir.openAt(name, .readOnly, options: [.noFollow, .nonBlocking]) else { return nil }
        defer { fd.closeQuietly() }
        var out = [UInt8](repeating: 0, count: limit)
        var count = 0
        while count < limit {
            let read = valueOrErrno { out.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress! + count, limit - count) } }
            guard case .success(let n) = read else { return nil }
            if n == 0 { break }
            count += n
        }
        return Array(out[..<count])
    }

    /// Deletes an applied claim. No flush: a claim that a power cut brings back is finished
    /// again, which changes nothing (its task exists, or its task's lastDrop names it).
    func removeClaim(_ claim: Claim) throws(SpoolError) {
        retire(claim.fileName, in: claimed)
        do { try claimed.removeAt(claim.fileName) } catch {
            if error != .noSuchFileOrDirectory {
                throw SpoolError.io("Removing the applied drop", claimedPath.appending(claim.fileName), error)
            }
        }
    }
}

extension DropBox {
    /// Whether a claim left by an interrupted pass is a name a power cut brought back after
    /// its drop was applied and its inode reused (see `retire`): the name's applied record
    /// names the claim's flow with the SHA-256 of other bytes than the claim holds now (or
    /// the claim is no longer a regular file). A name is applied to a flow only once with
    /// given bytes — other content under an applied name is refused before it is claimed —
    /// so such a claim holds no drop of its own.
    func isStaleClaim(_ claim: Claim, now: Timestamp) -> Bool {
        // A drop of another user has its record under its uid (the claim keeps the drop's owner).
        let owner = (try? claimed.statusAt(claim.fileName))?.owner
        let name = Layout.appliedRecordName(claim.name, uid: owner.flatMap { $0 == geteuid() ? nil : $0 })
        guard let record = appliedRecord(name, now: now), record.flowId == claim.flowId, let digest = record.digest else { return false }
        guard let fd = try? claimed.openAt(claim.fileName, .readOnly, options: [.noFollow, .nonBlocking]) else {
            return (try? claimed.statusAt(claim.fileName))?.kind != nil  // there, but not a file we may open
        }
        defer { fd.closeQuietly() }
        guard let st = try? fd.status(), st.kind == .regular else { return true }
        guard let bytes = try? fd.readToEnd(limit: Spool.dropLimit, sizeHint: Int(st.size)) else { return false }
        return SHA256.hex(bytes) != digest
    }

    /// Before the last name of a finished drop is removed: where metadata is not ordered,
    /// holds the drop open, so that its inode is not freed — and cannot be reused by another
    /// file — before `settle` has made the removal of its names durable. Without that, a
    /// power cut could keep a removed name (a claim, a drop's name in incoming/new, the
    /// reporter's in incoming/tmp) naming an inode that now holds another file: a task
    /// record, or another drop, which would then be read, or refused as a hard link, under
    /// that name. No flush here: the names' removals need none until the inode is let go.
    func retire(_ name: String, in dir: FileDescriptor) {
        guard !ordered, let fd = try? dir.openAt(name, .readOnly, options: [.noFollow, .nonBlocking]) else { return }
        retired.fds.append(fd)
    }

    /// Flushes incoming/new, incoming/claimed and incoming/tmp together and lets the retired
    /// drops go; with `force: false` only once 32 are held.
    func settle(force: Bool) throws(SpoolError) {
        guard !retired.fds.isEmpty, force || retired.fds.count >= 32 else { return }
        defer {
            for fd in retired.fds { fd.closeQuietly() }
            retired.fds = []
        }
        let dirs = [new, claimed] + (tmp.map { [$0] } ?? [])
        if let (index, error) = FileDescriptor.synchronizeAll(dirs, files: dirs.map { _ in false }).first {
            let paths = [newPath, claimedPath, tmpPath]
            throw SpoolError.io("Flushing the directory", paths[index], error)
        }
    }
}

/// Finished drops held open by `DropBox.retire`.
final class RetiredDrops {
    var fds: [FileDescriptor] = []
}

/// New-flow drops claimed in this pass and not yet created: they are created together, in
/// one transaction.
private struct NewFlowBatch {
    var items: [(claim: Claim, drop: Drop.NewTaskDrop)] = []
    /// Task ids the drops chose: a second drop with one of them waits for the next batch.
    var taskIds: Set<String> = []
    /// Owner link names: a new flow's link decision reads the owner's other flows, so a
    /// second new flow of one owner waits for the next batch.
    var owners: Set<String> = []

    /// Whether `drop` may join this batch.
    func admits(_ drop: Drop.NewTaskDrop) -> Bool {
        items.count < Spool.dropBatchLimit && !(drop.taskId.map(taskIds.contains) ?? false) && !owners.contains(OwnerKey.linkName(drop.ownerKey ?? ""))
    }

    mutating func add(_ claim: Claim, _ drop: Drop.NewTaskDrop) {
        items.append((claim, drop))
        if let id = drop.taskId { taskIds.insert(id) }
        owners.insert(OwnerKey.linkName(drop.ownerKey ?? ""))
    }
}
