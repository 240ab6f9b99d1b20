import ClawflowModel
import Glibc
import SystemPackage

/// One maintenance action, planned from a scan and, with `--apply`, carried out.
public struct MaintenanceItem: Sendable {
    /// What to do to whom.
    public enum Target: Sendable {
        /// A write to (or the pruning of) a flow.
        case flow(String, MaintenanceAction)
        /// A temp file or unfinished staging directory of a writer that is gone.
        case sweep(FilePath)
        /// A refused drop (and its `.reason`) older than the cap.
        case rejected(String)
        /// Active command tasks of a flow whose supervisor is gone (the runner records them lost).
        case deadCommands(String)
        /// `index/runs` is missing or incomplete (a spool made before it): build it.
        case runIndex
    }

    /// The target.
    public var target: Target
    /// `flow`, `task` or `spool`.
    public var kind: String
    /// The flow id, task ids, or file name.
    public var id: String
    /// Why.
    public var reason: String
    /// After `apply`: whether it was carried out (false: the record changed since the scan).
    public var done = false

    /// The action's name: `finalise_cancel`, `end_orphaned`, `mark_lost`, `fail_blocked_missing`,
    /// `fix_timestamps`, `prune`, `sweep_temp`, `cap_rejected`, `build_run_index`.
    public var action: String {
        switch target {
        case .flow(_, let a): a.name
        case .sweep: "sweep_temp"
        case .rejected: "cap_rejected"
        case .deadCommands: "mark_lost"
        case .runIndex: "build_run_index"
        }
    }
}

extension Spool {
    /// The maintenance a spool needs (spec §6, `maintenance`), from one scan.
    /// `isDeadCommand` tells an active command task whose supervisor is gone (the runner knows).
    public func planMaintenance(
        _ scan: SpoolScan, now: Timestamp = Spool.now(), policy: MaintenancePolicy, isDeadCommand: (TaskRecord) -> Bool = { _ in false }
    ) -> [MaintenanceItem] {
        var out: [MaintenanceItem] = []
        for snap in scan.flows.reversed() {
            let dead = snap.tasks.filter(isDeadCommand)
            if !dead.isEmpty {
                out.append(
                    MaintenanceItem(
                        target: .deadCommands(snap.flow.flowId), kind: "task", id: dead.map(\.taskId).joined(separator: ","),
                        reason: "the supervisor of \(dead.count) command task(s) is gone"))
                continue
            }
            for (action, reason) in MaintenanceRules.plan(flow: snap.flow, tasks: snap.tasks, now: now, policy: policy) {
                if case .markSilentLost(let ids) = action {
                    out.append(MaintenanceItem(target: .flow(snap.flow.flowId, action), kind: "task", id: ids.joined(separator: ","), reason: reason))
                } else {
                    out.append(MaintenanceItem(target: .flow(snap.flow.flowId, action), kind: "flow", id: snap.flow.flowId, reason: reason))
                }
            }
        }
        for path in scan.debris + strayTempFiles() where age(of: path, now: now) >= policy.tempAge {
            out.append(
                MaintenanceItem(
                    target: .sweep(path), kind: "spool", id: path.lastComponent?.string ?? "",
                    reason: "left by a writer that is gone, \(DurationText.describe(age(of: path, now: now))) old"))
        }
        for drop in rejectedDrops() where (now.milliseconds - drop.refusedAt) / 1000 >= policy.rejectedAge {
            out.append(
                MaintenanceItem(
                    target: .rejected(drop.name), kind: "spool", id: drop.name,
                    reason: "refused \(DurationText.describe((now.milliseconds - drop.refusedAt) / 1000)) ago (\(drop.reason))"))
        }
        if withCompleteRunIndex({ _ in true }) == nil {
            out.append(
                MaintenanceItem(
                    target: .runIndex, kind: "spool", id: "index/runs",
                    reason: "the run index is missing or incomplete (a spool made before it): run ids are looked up by reading every flow"))
        }
        return out
    }

    /// Carries out planned maintenance. Each flow action re-reads the flow under its lock and
    /// is left alone when it no longer applies; writes go through the one mutation path and
    /// log a `repair` (or `pruned`) event; `settleDeadCommands` records a flow's dead command
    /// tasks lost (the runner re-checks under the lock) and says whether it did. Returns the
    /// items with `done` set.
    public func applyMaintenance(_ items: [MaintenanceItem], policy: MaintenancePolicy, settleDeadCommands: (String) -> Bool = { _ in false })
        -> [MaintenanceItem]
    {
        items.map { item in
            var item = item
            switch item.target {
            case .flow(let flowId, .prune):
                item.done = (try? prune(flowId, policy: policy)) ?? false
            case .flow(let flowId, let action):
                item.done = (try? repair(flowId, action, reason: item.reason, policy: policy)) ?? false
            case .sweep(let path):
                item.done = sweep(path, logging: item)
            case .rejected(let name):
                item.done = dropRejected(name)
            case .deadCommands(let flowId):
                item.done = settleDeadCommands(flowId)
            case .runIndex:
                item.done = (try? buildRunIndex()) ?? false
            }
            return item
        }
    }

    /// One status repair, if it still applies under the flow lock.
    func repair(_ flowId: String, _ action: MaintenanceAction, reason: String, policy: MaintenancePolicy) throws(SpoolError) -> Bool {
        try mutate(flow: flowId, source: "maintenance") { (change) throws(SpoolError) -> Bool in
            guard MaintenanceRules.still(action, flow: change.flow, tasks: change.orderedTasks, now: change.now, policy: policy) else { return false }
            MaintenanceRules.apply(action, flow: &change.flow, tasks: &change.tasks, now: change.now, policy: policy)
            change.log(["event": "repair", "action": .string(action.name), "reason": .string(reason)])
            return true
        }.result
    }

    /// Deletes a terminal flow past retention, if it still is under the locks: its index
    /// entries go, it is renamed into tmp/ (gone from flows/ at once) and deleted, and its
    /// owner's link moves to the owner's next pick (or is removed).
    func prune(_ flowId: String, policy: MaintenancePolicy) throws(SpoolError) -> Bool {
        let tx = Transaction(self)
        let dir = try tx.lock(flow: flowId)
        let snap = try readFlow(in: dir, flowId: flowId)
        let now = Spool.now()
        guard snap.problems.isEmpty, MaintenanceRules.still(.prune, flow: snap.flow, tasks: snap.tasks, now: now, policy: policy) else { return false }
        try tx.lockSpool()
        let log = try openEventLog(in: dir, flowId: flowId)
        tx.hold(log)
        try appendEvents(
            [["event": "pruned", "reason": .string("ended \(snap.flow.endedAt?.description ?? "?"); retention \(DurationText.describe(policy.retention))")]],
            to: log, flowId: flowId, at: now, source: "maintenance", barrier: &tx.barrier)
        if let taskIndexFD {
            for task in snap.tasks where taskIndexTarget(task.taskId) == flowId {
                try? taskIndexFD.removeAt(task.taskId)
            }
            tx.barrier.add(directory: taskIndexFD, self.path(.taskIndex))
        }
        unindexRunIds(snap.tasks, flowId: flowId, barrier: &tx.barrier)
        let name = OwnerKey.linkName(snap.flow.ownerKey)
        if let ownerIndexFD {
            if let ownerDir = try? ownerIndexFD.openDirectoryAt(name) {
                try? ownerDir.removeAt(flowId)
                ownerDir.closeQuietly()
                try? ownerIndexFD.removeAt(name, directory: true)  // only succeeds when it was the owner's last flow
            }
            tx.barrier.add(directory: ownerIndexFD, self.path(.ownerIndex))
        }
        let graveyard = Layout.stagingName(flowId: flowId, pid: Spool.pid)
        let tmpFD = try staging.openOrCreate(root: root)
        do { try flowsFD.renameAt(flowId, to: tmpFD, graveyard, flags: .noReplace) } catch {
            throw SpoolError.io("Moving the pruned flow out of flows/ at", flowPath(flowId), error)
        }
        tx.barrier.add(directory: flowsFD, self.path(.flows))
        tx.barrier.add(directory: tmpFD, self.path(.staging))
        try tx.flush()
        try rebuildOwnerLink(key: snap.flow.ownerKey, in: tx)
        try tx.end()
        removeStaging(graveyard)
        return true
    }

    /// Removes a stray temp file, or an unfinished staging directory, of a writer that is gone.
    /// One in a flow's directory (or its `tasks/`) goes under the flow's lock, with a `repair`
    /// event in the flow's events.jsonl; the others belong to no flow and have no history.
    func sweep(_ path: FilePath, logging item: MaintenanceItem) -> Bool {
        let name = path.lastComponent?.string ?? ""
        let dir = path.removingLastComponent()
        if dir == self.path(.staging), Layout.stagingPid(name) != nil {
            removeStaging(name)
            return (try? staging.fd?.statusAt(name)) == nil
        }
        let flowDir = dir.lastComponent?.string == Layout.tasks ? dir.removingLastComponent() : dir
        if flowDir.removingLastComponent() == self.path(.flows), let flowId = flowDir.lastComponent?.string, Identifier.isValid(flowId) {
            let removed = try? mutate(flow: flowId, source: "maintenance") { (change) throws(SpoolError) -> Bool in
                guard unlink(path.string) == 0 else { return false }
                change.log(["event": "repair", "action": .string(item.action), "reason": .string("\(path.string): \(item.reason)")])
                return true
            }.result
            return removed ?? false
        }
        return unlink(path.string) == 0
    }

    /// Deletes a refused drop and its `.reason` file.
    func dropRejected(_ name: String) -> Bool {
        guard let dir = try? rootFD.openDirectoryAt(SpoolDirectory.rejected.rawValue) else { return false }
        defer { dir.closeQuietly() }
        try? dir.removeAt(name + ".reason")
        do { try dir.removeAt(name) } catch { return false }
        return true
    }
}
