import ClawflowModel
import Glibc
import SystemPackage

/// One thing `fsck` found.
public struct FsckFinding: Sendable, Equatable {
    /// A stable code: `unparseable_record`, `unexpected_entry`, `bad_owner_link`,
    /// `stale_owner_link`, `missing_index`, `derived_state`, `missing_queue_entry`,
    /// `duplicate_queue_entry`, or, for notes, `missing_derived`, `temp_debris`,
    /// `staging_debris`, `dangling_index`, `pending_owner_link`, `dangling_owner_link`,
    /// `missing_owner_link`, `interrupted_write`, `stale_queue_entry`, `undone_delivery`.
    public var code: String
    /// The file or directory concerned.
    public var path: String
    /// What is wrong, in a sentence.
    public var message: String
}

/// The result of a check: findings break an invariant; notes are leftovers of interrupted
/// writes that no reader ever sees and that `--repair` (or maintenance) clears.
public struct FsckReport: Sendable {
    /// Broken invariants.
    public var findings: [FsckFinding] = []
    /// Harmless leftovers of interrupted writes.
    public var notes: [FsckFinding] = []
    /// What `--repair` did, one sentence each.
    public var repairs: [String] = []
}

extension Spool {
    /// Checks every invariant of spool-layout.md ("Invariants"); with `repair`, removes
    /// debris of dead writers, rebuilds indexes and owner links, re-derives flow state, and
    /// moves planted files to rejected/. Unreadable records are reported, never touched.
    public func fsck(repair: Bool) throws(SpoolError) -> FsckReport {
        var report = FsckReport()
        if repair {
            try performRepairs(into: &report)
            repairDeliveries(into: &report)
        }
        try check(into: &report)
        checkDeliveries(into: &report)
        return report
    }

    private func check(into report: inout FsckReport) throws(SpoolError) {
        var flowsByOwner: [String: [FlowRecord]] = [:]
        var taskOwners: [String: String] = [:]
        var taskRuns: [String: String] = [:]
        let flowsPath = path(.flows)
        let entries: [DirectoryEntry]
        do { entries = try flowsFD.entries() } catch { throw SpoolError.io("Listing", flowsPath, error) }
        for entry in entries.sorted(by: { $0.name < $1.name }) {
            let path = flowsPath.appending(entry.name)
            guard Identifier.isValid(entry.name) else {
                report.findings.append(
                    FsckFinding(code: "unexpected_entry", path: path.string, message: "\(path) is not a flow directory (its name is not a flow id)"))
                continue
            }
            let kind = (try? flowsFD.statusAt(entry.name))?.kind ?? entry.kind
            guard kind == .directory else {
                report.findings.append(FsckFinding(code: "unexpected_entry", path: path.string, message: "\(path) is a \(kind.word), not a flow directory"))
                continue
            }
            checkFlowDirectory(entry.name, into: &report, flowsByOwner: &flowsByOwner, taskOwners: &taskOwners, taskRuns: &taskRuns)
        }
        let readable = Set(flowsByOwner.values.joined().map(\.flowId))
        let unreadable = Set(entries.map(\.name).filter { Identifier.isValid($0) && !readable.contains($0) && flowExists($0) })
        let claims = flowsByOwner.flatMap { key, flows in
            let linkName = OwnerKey.linkName(key)
            return flows.map { OwnerClaim($0, linkName: linkName) }
        }
        // Derived directories may be missing (spool-layout.md, "Derived state"): readers then
        // scan, and the next writer to open the spool, or --repair, rebuilds them.
        for name in ["owners", "index/tasks", "index/owners", "index/runs"] where (try? rootFD.statusAt(name)) == nil {
            report.notes.append(
                FsckFinding(
                    code: "missing_derived", path: root.appending(name).string,
                    message: "\(root.appending(name)) is missing; readers scan the records instead, and the next write or fsck --repair rebuilds it"))
        }
        if ownersFD != nil { checkOwnerLinks(claims, unreadable: unreadable, into: &report) }
        checkIndexes(flowsByOwner, taskOwners, into: &report)
        checkQueues(Array(flowsByOwner.values.joined()), unreadable: unreadable, into: &report)
        checkRunIndex(taskOwners, taskRuns, into: &report)
        for entry in (try? staging.fd?.entries()) ?? [] {
            report.notes.append(
                FsckFinding(
                    code: "staging_debris", path: path(.staging).appending(entry.name).string,
                    message: "an unfinished flow left in tmp/ by an interrupted creation"))
        }
    }

    private func checkFlowDirectory(
        _ flowId: String, into report: inout FsckReport, flowsByOwner: inout [String: [FlowRecord]], taskOwners: inout [String: String],
        taskRuns: inout [String: String]
    ) {
        let path = flowPath(flowId)
        guard let dir = try? flowsFD.openDirectoryAt(flowId) else {
            report.findings.append(FsckFinding(code: "unexpected_entry", path: path.string, message: "\(path) cannot be opened as a directory"))
            return
        }
        defer { dir.closeQuietly() }
        for entry in (try? dir.entries()) ?? [] {
            let kind = (try? dir.statusAt(entry.name))?.kind ?? entry.kind
            let expected: FileKind? =
                switch entry.name {
                case Layout.manifest, Layout.events: .regular
                case Layout.tasks: .directory
                default: nil
                }
            classify(entry.name, in: dir, kind: kind, expected: expected, path: path.appending(entry.name), into: &report)
        }
        let flow: FlowRecord
        do { flow = try readManifest(in: dir, flowId: flowId) } catch {
            report.findings.append(FsckFinding(code: "unparseable_record", path: path.appending(Layout.manifest).string, message: error.message))
            return
        }
        flowsByOwner[flow.ownerKey, default: []].append(flow)
        let tasksPath = path.appending(Layout.tasks)
        if let tasksDir = try? dir.openDirectoryAt(Layout.tasks) {
            for entry in (try? tasksDir.entries()) ?? [] {
                let kind = (try? tasksDir.statusAt(entry.name))?.kind ?? entry.kind
                classify(
                    entry.name, in: tasksDir, kind: kind, expected: Layout.taskId(fromTaskFile: entry.name) != nil ? .regular : nil,
                    path: tasksPath.appending(entry.name), into: &report)
            }
            tasksDir.closeQuietly()
        } else {
            report.findings.append(FsckFinding(code: "unexpected_entry", path: tasksPath.string, message: "\(tasksPath) is missing or not a directory"))
        }
        let tasks: [TaskRecord]
        let problems: [RecordProblem]
        do { (tasks, problems, _) = try readTasks(in: dir, flowId: flowId, ownerKey: flow.ownerKey) } catch {
            report.findings.append(FsckFinding(code: "unparseable_record", path: tasksPath.string, message: error.message))
            return
        }
        let misplaced = Set(report.findings.filter { $0.code == "unexpected_entry" }.map(\.path))
        for p in problems where !misplaced.contains(p.path.string) {
            report.findings.append(FsckFinding(code: "unparseable_record", path: p.path.string, message: p.message))
        }
        for t in tasks {
            taskOwners[t.taskId] = flowId
            if let run = t.runId, !run.isEmpty { taskRuns[t.taskId] = run }
        }
        if problems.isEmpty, Rules.reconcile(flow, tasks: tasks, at: Spool.now()) != flow {
            if tasks.contains(where: { ($0.flowRevision ?? 0) > flow.revision }) {
                report.notes.append(
                    FsckFinding(
                        code: "interrupted_write", path: path.appending(Layout.manifest).string,
                        message:
                            "a write to flow \(flowId) stopped between a task file and the manifest; the next write to the flow or fsck --repair completes it"))
                return
            }
            report.findings.append(
                FsckFinding(
                    code: "derived_state", path: path.appending(Layout.manifest).string,
                    message: "flow \(flowId) is \(flow.status.rawValue), which its tasks no longer support (mirroring or cancel finalisation is due)"))
        }
    }

    /// Sorts a directory entry into fine, debris (a note) or out of place (a finding).
    private func classify(_ name: String, in dir: FileDescriptor, kind: FileKind, expected: FileKind?, path: FilePath, into report: inout FsckReport) {
        if let expected, kind == expected { return }
        if kind == .regular, let pid = Layout.tempWriterPid(name) {
            let live = writerMayRun(pid, entry: name, in: dir)
            report.notes.append(
                FsckFinding(
                    code: "temp_debris", path: path.string,
                    message: live ? "a temp file of running writer \(pid)" : "a temp file left by writer \(pid), which is gone"))
            return
        }
        let what = expected == nil ? "does not belong here" : "should be a \(expected!.word)"
        report.findings.append(
            FsckFinding(code: "unexpected_entry", path: path.string, message: "\(path) is a \(kind.word) and \(what); clawflow does not follow or open it"))
    }

    /// The text of each symlink `names` in owners/ (nil: not a symlink or unreadable), read in parallel.
    func readLinks(_ names: [String]) -> [String?] {
        Spool.parallelMap(names, minimum: 1024) { try? self.ownersFD?.readLinkAt($0) }
    }

    /// One readable flow as the owner-link check sees it, and, when the reader already read
    /// it, the text of its owner's link (`.some(nil)`: not a symlink).
    struct OwnerClaim: Sendable {
        var linkName: String
        var ownerKey: String
        var flow: (id: String, createdAt: Timestamp, isTerminal: Bool)
        var linkText: String?? = nil

        /// The claim of `flow`, with its link read now when `ownersFD` is given.
        init(_ flow: FlowRecord, linkName: String? = nil, readingLinkIn ownersFD: FileDescriptor? = nil) {
            self.linkName = linkName ?? OwnerKey.linkName(flow.ownerKey)
            self.ownerKey = flow.ownerKey
            self.flow = (flow.flowId, flow.createdAt, flow.isTerminal)
            if let ownersFD { linkText = .some(try? ownersFD.readLinkAt(self.linkName)) }
        }
    }

    /// Checks owners/ against the flows' owner keys: every link points at the flow the lookup
    /// rule picks (a pending marker excuses it) and no link lacks a flow; an owner without a
    /// link is a note. `listed` is a listing of owners/ made already, if any.
    func checkOwnerLinks(_ claims: [OwnerClaim], unreadable: Set<String>, listed: [DirectoryEntry]? = nil, into report: inout FsckReport) {
        let ownersPath = path(.owners)
        // What each link name should be: the owner key, the flow the lookup rule picks, the
        // link text if a reader read it, and whether owners/ lists the link.
        struct Expected {
            var key: String
            var pick: (id: String, createdAt: Timestamp, isTerminal: Bool)
            var text: String??
            var seen = false
        }
        var expected: [String: Expected] = [:]
        expected.reserveCapacity(claims.count)
        for claim in claims {
            if let i = expected.index(forKey: claim.linkName) {
                if Rules.ownerPickPrefers(claim.flow, over: expected.values[i].pick) { expected.values[i].pick = claim.flow }
            } else {
                expected[claim.linkName] = Expected(key: claim.ownerKey, pick: claim.flow, text: claim.linkText)
            }
        }
        guard let ownersFD else { return }  // no links: readers compute every pick
        var pending: [String: String?] = [:]  // link name -> the marker's target
        let entries = listed ?? (try? ownersFD.entries()) ?? []
        for entry in entries where entry.name.hasPrefix(".") {
            if let name = Layout.ownerName(fromPending: entry.name) {
                pending[name] = (try? ownersFD.readLinkAt(entry.name)).flatMap(Layout.flowId(fromOwnerLink:))
                report.notes.append(
                    FsckFinding(
                        code: "pending_owner_link", path: ownersPath.appending(entry.name).string,
                        message: "an owner link update was interrupted; the next write for that owner or fsck --repair finishes it"))
            }
        }
        // Links no claim read are read here, on every core (100,000 owners have 100,000 links).
        let links = entries.filter { !$0.name.hasPrefix(".") }.map(\.name)
        let unread = links.filter { name in expected.index(forKey: name).map { expected.values[$0].text == nil } ?? true }
        var readNow = Dictionary(uniqueKeysWithValues: zip(unread, readLinks(unread)))
        for name in links {
            let slot = expected.index(forKey: name)
            var want: Expected? { slot.map { expected.values[$0] } }
            let text: String? = want?.text ?? readNow.removeValue(forKey: name) ?? nil
            var path: FilePath { ownersPath.appending(name) }
            if let slot { expected.values[slot].seen = true }
            guard let text else {
                // Gone since owners/ was listed: a prune or a move removed it, nothing is wrong.
                if (try? ownersFD.statusAt(name)) == nil { continue }
                report.findings.append(FsckFinding(code: "bad_owner_link", path: path.string, message: "\(path) is not a symlink"))
                continue
            }
            guard let target = Layout.flowId(fromOwnerLink: text) else {
                report.findings.append(
                    FsckFinding(code: "bad_owner_link", path: path.string, message: "\(path) points at \"\(sanitized(text))\", not ../flows/<flow id>"))
                continue
            }
            // A link to a flow whose manifest is unreadable is judged once that file is restored.
            if unreadable.contains(target) { continue }
            // A link naming a flow that does not exist is behind, as beside a marker: readers
            // compute the pick from the index. A creation stopped after its link moved and
            // before the rename of its flow was flushed leaves one (spool-layout.md).
            if target != want?.pick.id, pending[name] == nil, !flowExists(target) {
                report.notes.append(
                    FsckFinding(
                        code: "dangling_owner_link", path: path.string,
                        message:
                            "\(path) names flow \(target), which does not exist (a creation was interrupted); readers use the owner's index, and the next write for that owner or fsck --repair fixes the link"
                    ))
                continue
            }
            guard let want else {
                report.findings.append(
                    FsckFinding(
                        code: "bad_owner_link", path: path.string,
                        message: "\(path) points at flow \(target), but no readable flow has an owner key with this link name"))
                continue
            }
            // While a marker exists readers ignore the link and compute the pick from the index,
            // so a stale link beside a marker is an interrupted move, not a broken invariant.
            if target != want.pick.id, pending[name] == nil {
                report.findings.append(
                    FsckFinding(
                        code: "stale_owner_link", path: path.string,
                        message: "\(path) points at flow \(target); the lookup rule picks \(want.pick.id) for owner \"\(sanitized(want.key))\""))
            }
        }
        for entry in entries where entry.name.hasPrefix(".") && Layout.ownerName(fromPending: entry.name) == nil {
            if Layout.tempWriterPid(entry.name) != nil {
                report.notes.append(
                    FsckFinding(code: "temp_debris", path: ownersPath.appending(entry.name).string, message: "a temp link left by an interrupted write"))
            } else {
                report.findings.append(
                    FsckFinding(
                        code: "unexpected_entry", path: ownersPath.appending(entry.name).string,
                        message: "\(ownersPath.appending(entry.name)) does not belong in owners/"))
            }
        }
        // A key's first link is created after its flow, without a marker: a write that stopped
        // between the two leaves an owner with no link, and readers use the owner's index.
        for (name, want) in expected where !want.seen && pending[name] == nil {
            report.notes.append(
                FsckFinding(
                    code: "missing_owner_link", path: ownersPath.appending(name).string,
                    message:
                        "owner \"\(sanitized(want.key))\" has no link yet (the lookup rule picks flow \(want.pick.id)); readers use the owner's index, and the next write for that owner or fsck --repair creates it"
                ))
        }
    }

    private func checkIndexes(_ flowsByOwner: [String: [FlowRecord]], _ taskOwners: [String: String], into report: inout FsckReport) {
        if let taskIndexFD { checkTaskIndex(taskIndexFD, taskOwners, into: &report) }
        if let ownerIndexFD { checkOwnerIndex(ownerIndexFD, flowsByOwner, into: &report) }
    }

    private func checkTaskIndex(_ taskIndexFD: FileDescriptor, _ taskOwners: [String: String], into report: inout FsckReport) {
        let tasksIndexPath = path(.taskIndex)
        var indexed = Set<String>()
        for entry in (try? taskIndexFD.entries()) ?? [] {
            if taskOwners[entry.name] != nil, taskIndexTarget(entry.name) == taskOwners[entry.name] {
                indexed.insert(entry.name)
            } else if let flow = taskIndexTarget(entry.name), taskOwners[entry.name] == nil, taskFileExists(flowId: flow, taskId: entry.name) {
                continue  // the task file is there but unreadable: reported above, index kept
            } else {
                report.notes.append(
                    FsckFinding(
                        code: "dangling_index", path: tasksIndexPath.appending(entry.name).string,
                        message: "an index entry for a task that does not exist (left by an interrupted creation)"))
            }
        }
        for (taskId, flowId) in taskOwners where !indexed.contains(taskId) {
            report.findings.append(
                FsckFinding(
                    code: "missing_index", path: tasksIndexPath.appending(taskId).string,
                    message: "task \(taskId) of flow \(flowId) is missing from index/tasks"))
        }
    }

    private func checkOwnerIndex(_ ownerIndexFD: FileDescriptor, _ flowsByOwner: [String: [FlowRecord]], into report: inout FsckReport) {
        let ownerIndexPath = path(.ownerIndex)
        var ownerNames = Set<String>()
        for (key, flows) in flowsByOwner {
            let name = OwnerKey.linkName(key)
            ownerNames.insert(name)
            let listed = Set(ownerIndex(name))
            for flow in flows where !listed.contains(flow.flowId) {
                report.findings.append(
                    FsckFinding(
                        code: "missing_index", path: ownerIndexPath.appending(name).appending(flow.flowId).string,
                        message: "flow \(flow.flowId) is missing from its owner's index"))
            }
            let ids = Set(flows.map(\.flowId))
            for id in listed where !ids.contains(id) && !flowExists(id) {
                report.notes.append(
                    FsckFinding(
                        code: "dangling_index", path: ownerIndexPath.appending(name).appending(id).string,
                        message: "an owner index entry for a flow that does not exist"))
            }
        }
        for entry in (try? ownerIndexFD.entries()) ?? [] where !ownerNames.contains(entry.name) && !ownerIndex(entry.name).contains(where: flowExists) {
            report.notes.append(FsckFinding(code: "dangling_index", path: ownerIndexPath.appending(entry.name).string, message: "an owner index with no flows"))
        }
    }

    /// What an entry `index/runs/<name>/<taskId>` should be: backed (a task with a run id
    /// that encodes to `name`, in the flow the link names), kept (its task file is there but
    /// unreadable), or dangling.
    private func runIndexEntry(_ name: String, _ taskId: String, in dir: FileDescriptor, _ taskOwners: [String: String], _ taskRuns: [String: String]) -> (
        backed: Bool, keep: Bool
    ) {
        let text = try? dir.readLinkAt(taskId)
        let target = text.flatMap(Layout.flowId(fromKeyedIndex:))
        if let run = taskRuns[taskId], OwnerKey.linkName(run) == name, target == taskOwners[taskId] { return (true, true) }
        if taskOwners[taskId] == nil, let target, Identifier.isValid(target), taskFileExists(flowId: target, taskId: taskId) { return (false, true) }
        return (false, false)
    }

    /// `index/runs`: there, complete (its marker), every task with a run id listed, and
    /// every entry backed by such a task.
    private func checkRunIndex(_ taskOwners: [String: String], _ taskRuns: [String: String], into report: inout FsckReport) {
        let indexPath = path(.runIndex)
        guard let (index, opened) = runIndex() else { return }  // missing_derived says so
        defer { if opened { index.closeQuietly() } }
        let complete = (try? index.statusAt(Layout.runIndexComplete)) != nil
        if !complete {
            report.notes.append(
                FsckFinding(
                    code: "run_index_incomplete", path: indexPath.string,
                    message:
                        "the run index is not complete (its build was interrupted): run ids are looked up by reading every flow until fsck --repair completes it"
                ))
        }
        var listed = Set<String>()
        for entry in (try? index.entries()) ?? [] where !entry.name.hasPrefix(".") {
            guard let dir = try? index.openDirectoryAt(entry.name) else {
                report.findings.append(
                    FsckFinding(
                        code: "unexpected_entry", path: indexPath.appending(entry.name).string,
                        message: "\(indexPath.appending(entry.name)) is not a directory of the run index"))
                continue
            }
            defer { dir.closeQuietly() }
            for e in (try? dir.entries()) ?? [] {
                let verdict = runIndexEntry(entry.name, e.name, in: dir, taskOwners, taskRuns)
                if verdict.backed {
                    listed.insert(e.name)
                } else if !verdict.keep {
                    report.notes.append(
                        FsckFinding(
                            code: "dangling_index", path: indexPath.appending(entry.name).appending(e.name).string,
                            message: "a run index entry for a task that does not exist or has another run id"))
                }
            }
        }
        guard complete else { return }
        for (taskId, run) in taskRuns where !listed.contains(taskId) {
            report.findings.append(
                FsckFinding(
                    code: "missing_index", path: indexPath.appending(OwnerKey.linkName(run)).appending(taskId).string,
                    message: "task \(taskId) of flow \(taskOwners[taskId] ?? "?") is missing from the index of its run id"))
        }
    }

    /// Builds `index/runs` when it is missing or incomplete (maintenance's `build_run_index`):
    /// every flow is read under the root lock, so no task can be added meanwhile. Returns
    /// false when it was complete already.
    func buildRunIndex() throws(SpoolError) -> Bool {
        let tx = Transaction(self, grouped: true)
        try tx.lockSpool()
        guard withCompleteRunIndex({ _ in true }) == nil else { return false }
        var taskOwners: [String: String] = [:]
        var taskRuns: [String: String] = [:]
        for id in try flowIds() {
            guard let snap = try? readFlowHoldingRootLock(id) else { continue }
            for t in snap.tasks {
                taskOwners[t.taskId] = id
                if let run = t.runId, !run.isEmpty { taskRuns[t.taskId] = run }
            }
        }
        var report = FsckReport()
        try repairRunIndex(taskOwners, taskRuns, in: tx, into: &report)
        try tx.end()
        return true
    }

    /// Builds or completes `index/runs` inside `tx` (spool lock held): dangling entries out,
    /// every task with a run id in, a barrier, then the marker that says it is complete.
    private func repairRunIndex(_ taskOwners: [String: String], _ taskRuns: [String: String], in tx: Transaction, into report: inout FsckReport)
        throws(SpoolError)
    {
        let indexPath = path(.runIndex)
        let index: FileDescriptor
        do {
            if (try? rootFD.statusAt(SpoolDirectory.runIndex.rawValue)) == nil {
                try rootFD.makeDirectoryAt(SpoolDirectory.runIndex.rawValue, existingIsFine: true)
                let parent = try rootFD.openDirectoryAt(SpoolDirectory.index.rawValue)
                tx.barrier.add(directory: parent, self.path(.index), owned: true)
            }
            index = try rootFD.openDirectoryAt(SpoolDirectory.runIndex.rawValue)
        } catch {
            throw SpoolError.io("Building the run index in", indexPath, error)
        }
        tx.hold(index)
        let wasComplete = (try? index.statusAt(Layout.runIndexComplete)) != nil
        for entry in (try? index.entries()) ?? [] where !entry.name.hasPrefix(".") {
            guard let dir = try? index.openDirectoryAt(entry.name) else { continue }
            for e in (try? dir.entries()) ?? [] where !runIndexEntry(entry.name, e.name, in: dir, taskOwners, taskRuns).keep {
                try? dir.removeAt(e.name)
                report.repairs.append("removed the dangling run index entry \(entry.name)/\(sanitized(e.name))")
            }
            tx.barrier.add(directory: dir, indexPath.appending(entry.name), owned: true)
            try? index.removeAt(entry.name, directory: true)  // fails, harmlessly, while entries remain
        }
        var added = 0
        for (taskId, run) in taskRuns.sorted(by: { $0.key < $1.key }) {
            let name = OwnerKey.linkName(run)
            let target = Layout.keyedIndexTarget(taskOwners[taskId] ?? "")
            do {
                try index.makeDirectoryAt(name, existingIsFine: true)
                let dir = try index.openDirectoryAt(name)
                guard (try? dir.readLinkAt(taskId)) != target else {
                    dir.closeQuietly()
                    continue
                }
                try? dir.removeAt(taskId)
                try dir.symlinkAt(taskId, target: target)
                tx.barrier.add(directory: dir, indexPath.appending(name), owned: true)
                tx.barrier.addSymlinks()
            } catch {
                throw SpoolError.io("Indexing task \(taskId) under its run id in", indexPath.appending(name), error)
            }
            added += 1
            if wasComplete { report.repairs.append("indexed task \(taskId) under its run id") }
        }
        tx.barrier.add(directory: index, indexPath)
        if !wasComplete {
            // The marker says every entry is there: it follows them in a barrier of its own.
            try tx.flush()
            let marker = try tx.stage([], as: Layout.runIndexComplete, in: index, at: indexPath)
            try tx.flush()
            try tx.commit(marker)
            report.repairs.append("built the run index (\(added) task(s) with a run id)")
        }
    }

    /// Whether writer `pid`, named in temp entry `name` of `dir`, may still be at work on it.
    /// A pid reused by a newer process does not count (`ProcessIdentity.mayHaveWritten`).
    func writerMayRun(_ pid: Int32, entry name: String, in dir: FileDescriptor) -> Bool {
        ProcessIdentity.mayHaveWritten(pid: pid, modifiedMilliseconds: try? dir.statusAt(name).modifiedMilliseconds)
    }

    // MARK: - Repair

    private func performRepairs(into report: inout FsckReport) throws(SpoolError) {
        // 1. Re-derive flow state through the one mutation path (takes each flow's lock).
        for id in try flowIds() { movePlantedEntries(flowId: id, into: &report) }
        let now = Spool.now()
        let stale = try mapAllFlows { read -> String? in
            guard case .success(let snap) = read, snap.problems.isEmpty else { return nil }
            return Rules.reconcile(snap.flow, tasks: snap.tasks, at: now) != snap.flow ? snap.flow.flowId : nil
        }
        for case let id? in stale {
            _ = try mutate(flow: id, source: "fsck") { (change) throws(SpoolError) in
                change.log(["event": "repair", "what": "re-derived flow status from its tasks"])
            }
            report.repairs.append("re-derived the status of flow \(id)")
        }
        // 2. One grouped transaction under the spool lock: the layout's missing directories,
        // debris, indexes, cancel markers and owner links, made durable by its barriers
        // (a syncfs each), not by a flush per entry.
        let tx = Transaction(self, grouped: true)
        try tx.lockSpool()
        let records = try readRecordsHoldingSpoolLock()
        // What is missing is built from the records, complete (here, or when the spool was
        // opened): it needs no checking after.
        report.repairs += try rebuildLayout(in: tx, records: records)
        let built = rebuiltFromRecords.withLock { $0 }
        guard let ownersFD, let taskIndexFD, let ownerIndexFD else {
            throw SpoolError(
                .io, "The spool's derived directories (owners/, index/) could not be opened after they were rebuilt; check the permissions of \(root).",
                path: root)
        }
        removeDebris(into: &report)
        var taskOwners: [String: String] = [:]
        var taskRuns: [String: String] = [:]
        var flowsByName: [String: [FlowRecord]] = [:]
        var everyTask: [TaskRecord] = []
        for snap in records.snapshots {
            let id = snap.flow.flowId
            flowsByName[OwnerKey.linkName(snap.flow.ownerKey), default: []].append(snap.flow)
            everyTask += snap.tasks
            for t in snap.tasks {
                taskOwners[t.taskId] = id
                if let run = t.runId, !run.isEmpty { taskRuns[t.taskId] = run }
            }
        }
        // The owner index: each owner's directory listed once.
        for (name, flows) in flowsByName where !built.contains(SpoolDirectory.ownerIndex.rawValue) {
            let indexed = Set(ownerIndex(name))
            for flow in flows where !indexed.contains(flow.flowId) {
                try addToOwnerIndex(flow, barrier: &tx.barrier)
                report.repairs.append("indexed flow \(flow.flowId) under its owner")
            }
        }
        // Index entries are removed only when nothing backs them: an unreadable file keeps its entry.
        var indexedTasks = Set<String>()
        for entry in (built.contains(SpoolDirectory.taskIndex.rawValue) ? [] : (try? taskIndexFD.entries()) ?? []) where !entry.name.hasPrefix(".") {
            let target = taskIndexTarget(entry.name)
            if target != nil, target == taskOwners[entry.name] {
                indexedTasks.insert(entry.name)
                continue
            }
            if taskOwners[entry.name] == nil, let flow = target, taskFileExists(flowId: flow, taskId: entry.name) { continue }
            try? taskIndexFD.removeAt(entry.name)
            if let owner = taskOwners[entry.name] {
                try? taskIndexFD.symlinkAt(entry.name, target: Layout.taskIndexTarget(owner))
                indexedTasks.insert(entry.name)
                report.repairs.append("re-pointed the index entry of task \(entry.name)")
            } else {
                report.repairs.append("removed the dangling index entry of task \(sanitized(entry.name))")
            }
        }
        for (taskId, flowId) in taskOwners where !built.contains(SpoolDirectory.taskIndex.rawValue) && !indexedTasks.contains(taskId) {
            try? taskIndexFD.symlinkAt(taskId, target: Layout.taskIndexTarget(flowId))
            report.repairs.append("indexed task \(taskId)")
        }
        tx.barrier.add(directory: taskIndexFD, self.path(.taskIndex))
        tx.barrier.addSymlinks()
        if !built.contains(SpoolDirectory.runIndex.rawValue) { try repairRunIndex(taskOwners, taskRuns, in: tx, into: &report) }
        report.repairs += try repairCancelMarkers(everyTask, in: tx)
        for entry in (built.contains(SpoolDirectory.ownerIndex.rawValue) ? [] : (try? ownerIndexFD.entries()) ?? []) {
            guard let dir = try? ownerIndexFD.openDirectoryAt(entry.name) else { continue }
            let live = Set((flowsByName[entry.name] ?? []).map(\.flowId))
            for e in (try? dir.entries()) ?? [] where !live.contains(e.name) && !flowExists(e.name) {
                try? dir.removeAt(e.name)
                report.repairs.append("removed the dangling owner index entry \(entry.name)/\(e.name)")
            }
            tx.barrier.add(directory: dir, self.path(.ownerIndex).appending(entry.name), owned: true)
            if live.isEmpty { try? ownerIndexFD.removeAt(entry.name, directory: true) }  // fails, harmlessly, while entries remain
        }
        tx.barrier.add(directory: ownerIndexFD, self.path(.ownerIndex))
        // Owner links: every key's link rebuilt; links and markers of no key removed.
        for entry in (built.contains(SpoolDirectory.owners.rawValue) ? [] : (try? ownersFD.entries()) ?? []) {
            let name = Layout.ownerName(fromPending: entry.name) ?? entry.name
            if entry.name.hasPrefix("."), Layout.ownerName(fromPending: entry.name) == nil { continue }
            if flowsByName[name] == nil {
                if let target = ownerLinkTarget(entry.name), flowExists(target) { continue }  // its flow is unreadable: keep
                let kind = (try? ownersFD.statusAt(entry.name))?.kind
                if kind == .symlink {
                    try? ownersFD.removeAt(entry.name)
                    report.repairs.append("removed the owner link \(sanitized(entry.name)), which no flow's owner key uses")
                } else {
                    moveToRejected(
                        dir: ownersFD, name: entry.name, label: "owners-" + entry.name,
                        reason: "a \(kind?.word ?? "file") in owners/, where only symlinks belong", into: &report)
                }
            }
        }
        tx.barrier.add(directory: ownersFD, self.path(.owners))
        for (name, flows) in flowsByName.sorted(by: { $0.key < $1.key }) where !built.contains(SpoolDirectory.owners.rawValue) {
            // Keys whose names coincide (spool-layout.md, "Names and ids") are told apart by the
            // manifests, as the lookup rule does; the pick is made from the records read above.
            for key in Set(flows.map(\.ownerKey)).sorted() {
                if let target = ownerLinkTarget(name), records.unreadable.contains(target) { continue }
                let before = try? ownersFD.readLinkAt(name)
                if let kind = (try? ownersFD.statusAt(name))?.kind, kind != .symlink {
                    moveToRejected(dir: ownersFD, name: name, label: "owners-" + name, reason: "not a symlink", into: &report)
                }
                let pending = hasPendingOwnerLink(name)
                let pick = Rules.ownerPick(flows.filter { $0.ownerKey == key }.map { ($0.flowId, $0.createdAt, $0.isTerminal) })
                try rebuildOwnerLink(key: key, target: .some(pick), in: tx)
                if pending || before != (try? ownersFD.readLinkAt(name)) {
                    report.repairs.append("rebuilt the owner link of \"\(sanitized(key))\"")
                }
            }
        }
        try tx.end()
        // 3. The queues' entries, each under its queue's lock (taken before any other).
        let tasksByFlow = Dictionary(records.snapshots.map { ($0.flow.flowId, $0.tasks) }, uniquingKeysWith: { a, _ in a })
        report.repairs += try repairQueues(records.snapshots.map(\.flow), tasks: tasksByFlow, unreadable: Set(records.unreadable))
    }

    private func removeDebris(into report: inout FsckReport) {
        // Temp files of dead writers in every directory clawflow writes.
        func sweep(_ dir: FileDescriptor, _ path: FilePath) {
            for e in (try? dir.entries()) ?? [] {
                guard let pid = Layout.tempWriterPid(e.name), !writerMayRun(pid, entry: e.name, in: dir) else { continue }
                try? dir.removeAt(e.name)
                report.repairs.append("removed temp debris \(path.appending(e.name))")
            }
        }
        // An index build that died leaves its temp directory in index/ (see `rebuildLayout`).
        if let index = try? rootFD.openDirectoryAt(SpoolDirectory.index.rawValue) {
            for e in (try? index.entries()) ?? [] {
                guard let pid = Layout.tempWriterPid(e.name), !writerMayRun(pid, entry: e.name, in: index) else { continue }
                Spool.removeTree(e.name, in: index)
                report.repairs.append("removed the unfinished index build index/\(e.name)")
            }
            index.closeQuietly()
        }
        if let ownersFD { sweep(ownersFD, path(.owners)) }
        if let taskIndexFD { sweep(taskIndexFD, path(.taskIndex)) }
        if let (runs, opened) = runIndex() {
            sweep(runs, path(.runIndex))
            if opened { runs.closeQuietly() }
        }
        for id in (try? flowIds()) ?? [] {
            guard let dir = try? flowsFD.openDirectoryAt(id) else { continue }
            sweep(dir, flowPath(id))
            if let tasksDir = try? dir.openDirectoryAt(Layout.tasks) {
                sweep(tasksDir, flowPath(id).appending(Layout.tasks))
                tasksDir.closeQuietly()
            }
            dir.closeQuietly()
        }
        guard let tmpFD = staging.fd else { return }
        for e in (try? tmpFD.entries()) ?? [] {
            if let pid = Layout.stagingPid(e.name), writerMayRun(pid, entry: e.name, in: tmpFD) { continue }
            removeStaging(e.name)
            report.repairs.append("removed the unfinished flow tmp/\(e.name)")
        }
    }

    /// Moves symlinks, FIFOs and other strangers out of a flow directory into rejected/.
    private func movePlantedEntries(flowId: String, into report: inout FsckReport) {
        guard let dir = try? flowsFD.openDirectoryAt(flowId) else { return }
        defer { dir.closeQuietly() }
        for e in (try? dir.entries()) ?? [] {
            let kind = e.kind != .unknown ? e.kind : (try? dir.statusAt(e.name))?.kind
            let fine =
                (e.name == Layout.manifest || e.name == Layout.events)
                ? kind == .regular : e.name == Layout.tasks ? kind == .directory : Layout.tempWriterPid(e.name) != nil
            if !fine {
                moveToRejected(
                    dir: dir, name: e.name, label: "\(flowId)-\(e.name)", reason: "a \(kind?.word ?? "file") planted in flow \(flowId)", into: &report)
            }
        }
        guard let tasksDir = try? dir.openDirectoryAt(Layout.tasks) else { return }
        defer { tasksDir.closeQuietly() }
        for e in (try? tasksDir.entries()) ?? [] {
            let kind = e.kind != .unknown ? e.kind : (try? tasksDir.statusAt(e.name))?.kind
            let fine = (Layout.taskId(fromTaskFile: e.name) != nil && kind == .regular) || Layout.tempWriterPid(e.name) != nil
            if !fine {
                moveToRejected(
                    dir: tasksDir, name: e.name, label: "\(flowId)-tasks-\(e.name)", reason: "a \(kind?.word ?? "file") planted in the tasks of flow \(flowId)",
                    into: &report)
            }
        }
    }

    /// Renames a file into rejected/ (bytes kept) with a `.reason` file beside it.
    func moveToRejected(dir: FileDescriptor, name: String, label: String, reason: String, into report: inout FsckReport) {
        guard let rejected = try? rootFD.openDirectoryAt(SpoolDirectory.rejected.rawValue) else { return }
        defer { rejected.closeQuietly() }
        let safe = String(label.map { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) ? $0 : "_" }.prefix(180))
        let target = "\(safe).\(Spool.now().milliseconds)"
        do {
            try dir.renameAt(name, to: rejected, target, flags: .noReplace)
            let body: JSON = .object(["code": "unexpected_entry", "message": .string(reason), "name": .string(name), "at": .string(Spool.now().description)])
            try DurableFile.replace(in: rejected, name: target + ".reason", bytes: Array((body.pretty() + "\n").utf8), directoryPath: path(.rejected))
            try dir.synchronize()
            report.repairs.append("moved \(sanitized(name)) (\(reason)) to rejected/\(target)")
        } catch {
            report.repairs.append("could not move \(sanitized(name)) to rejected/: \(error)")
        }
    }
}
