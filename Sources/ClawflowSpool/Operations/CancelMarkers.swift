import ClawflowModel
import Glibc
import SystemPackage

/// Cancel markers (spool-layout.md, "Cancel markers"): `cancel/<taskId>.json`, one per
/// active external task with a cancel request, so that a runner that may not read `flows/`
/// (a member of a shared spool's group) still learns of the request. Derived from the task
/// records: staged and renamed with the change that records the request, removed once the
/// task ends, rebuilt by `fsck --repair`.
extension Spool {
    /// Whether `task` should have a marker: an external task, still active, asked to cancel.
    static func wantsCancelMarker(_ task: TaskRecord) -> Bool {
        !task.isCommand && task.status.isActive && task.cancelRequestedAt != nil
    }

    /// The marker's bytes: the ids a runner knows its task by, and when the cancel was asked.
    static func cancelMarkerBytes(_ task: TaskRecord) -> [UInt8] {
        var o: [String: JSON] = ["taskId": .string(task.taskId), "flowId": .string(task.parentFlowId), "cancelRequestedAt": task[.cancelRequestedAt] ?? .null]
        if let run = task.runId { o["runId"] = .string(run) }
        return Array((JSON.object(JSONObject(o)).pretty() + "\n").utf8)
    }

    /// The markers a change needs: those of `after` that want one and did not before, staged
    /// under temp names in `cancel/` (made when missing) by `tx`. The caller commits them
    /// once the task files are in place.
    func stageCancelMarkers(before: [String: TaskRecord], after: [TaskRecord], in tx: Transaction) throws(SpoolError) -> [StagedReplacement] {
        let new = after.filter { Spool.wantsCancelMarker($0) && !(before[$0.taskId].map(Spool.wantsCancelMarker) ?? false) }
        guard !new.isEmpty else { return [] }
        let dir = try cancelMarkers.openOrCreate(root: root)
        var staged: [StagedReplacement] = []
        for task in new {
            staged.append(
                try tx.stage(
                    Spool.cancelMarkerBytes(task), as: Layout.cancelMarker(task.taskId), in: dir, at: root.appending(Layout.cancelDirectory), permissions: 0o640
                ))
        }
        return staged
    }

    /// Removes the markers of tasks that had one before a change and no longer want one. No
    /// flush: a marker left by a crash names a task that ended, which its runner knows, and
    /// `fsck --repair` removes it.
    func removeCancelMarkers(before: [String: TaskRecord], after: [TaskRecord]) {
        guard let dir = cancelMarkers.fd else { return }
        for task in after where !Spool.wantsCancelMarker(task) && (before[task.taskId].map(Spool.wantsCancelMarker) ?? false) {
            try? dir.removeAt(Layout.cancelMarker(task.taskId))
        }
    }

    /// Makes `cancel/` agree with the records (fsck --repair): a marker for every task that
    /// wants one, none for any other. Returns what it changed, a sentence each.
    func repairCancelMarkers(_ tasks: [TaskRecord], in tx: Transaction) throws(SpoolError) -> [String] {
        let dir = try cancelMarkers.openOrCreate(root: root)
        var done: [String] = []
        let wanted = Dictionary(tasks.filter(Spool.wantsCancelMarker).map { (Layout.cancelMarker($0.taskId), $0) }, uniquingKeysWith: { a, _ in a })
        let present = Set(((try? dir.entries()) ?? []).map(\.name).filter { !$0.hasPrefix(".") })
        for name in present where wanted[name] == nil {
            try? dir.removeAt(name)
            done.append("removed the cancel marker \(sanitized(name)), whose task is not waiting on a cancel")
        }
        let missing = wanted.filter { !present.contains($0.key) }.map(\.value)
        let staged = try stageCancelMarkers(before: [:], after: missing, in: tx)
        try tx.flush()
        for marker in staged { try tx.commit(marker) }
        done += missing.map { "wrote the cancel marker of task \($0.taskId)" }
        if !done.isEmpty { tx.barrier.add(directory: dir, self.root.appending(Layout.cancelDirectory)) }
        return done
    }
}
