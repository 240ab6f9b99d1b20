import ClawflowModel

/// Reads that settle (spool-layout.md, "Flow record"): a command task is lost when it is
/// active and its supervisor is gone, and any read of its flow records that. Outside this
/// module flows are read only through these: `flow`, `flows`, `task`, `audit`, `rederive`
/// and `maintain` record `lost` before they answer, so no reader can forget to. The reads
/// inside the module (`readFlow`, `mapAllFlows`, ...) return the records as stored, for the
/// spool's own writers and checks.
extension Spool {
    /// Whether an active command task's supervisor is gone (dead, or its pid reused).
    public static func supervisorIsGone(_ task: TaskRecord) -> Bool {
        guard task.isCommand, task.status.isActive, let supervisor = task.supervisor else { return false }
        return !supervisor.isAlive
    }

    /// Whether an active command task's supervisor still runs (such a task is not stale,
    /// however long it is silent).
    public static func supervisorRuns(_ task: TaskRecord) -> Bool {
        task.supervisorPid != nil && !supervisorIsGone(task)
    }

    /// One flow as it is now: its manifest and tasks, command tasks whose supervisor is gone
    /// recorded `lost` first. With `withDebris` the flow directory is listed too, for temp
    /// files of gone writers.
    public func flow(_ flowId: String, withDebris: Bool = false) throws(SpoolError) -> FlowSnapshot {
        settled(try readFlow(flowId, withDebris: withDebris))
    }

    /// Every flow as it is now, newest first, each transformed (large spools are read by one
    /// thread per core); a flow whose manifest cannot be read comes as an error. `ids`, when
    /// given, is a listing of `flowIds()` the caller made already, so flows/ is not listed twice.
    public func flows<T: Sendable>(ids: [String]? = nil, withDebris: Bool = false, _ transform: @Sendable (Result<FlowSnapshot, SpoolError>) -> T)
        throws(SpoolError) -> [T]
    {
        try mapAllFlows(ids: ids, withDebris: withDebris) { result in transform(result.map(self.settled)) }
    }

    /// One task as it is now (`lost` recorded first, as `flow` does); a task file that cannot
    /// be read is an error naming the file.
    public func task(flowId: String, taskId: String) throws(SpoolError) -> TaskRecord {
        try task(taskId, in: flow(flowId))
    }

    /// Re-derives a flow's status from its tasks through the one mutation path (a write only
    /// when something is due), then records its lost command tasks. Returns the flow afterwards.
    public func rederive(_ flowId: String, source: String) throws(SpoolError) -> FlowSnapshot {
        settled(try mutate(flow: flowId, source: source) { (_: inout FlowChange) throws(SpoolError) in }.snapshot)
    }

    /// One maintenance pass (`clawflow maintenance`, and the watcher's timer): scan, plan,
    /// and with `apply` carry the plan out; command tasks whose supervisor is gone are
    /// recorded lost (re-checked under their flow's lock).
    public func maintain(policy: MaintenancePolicy, apply: Bool) throws(SpoolError) -> [MaintenanceItem] {
        let items = planMaintenance(try scan(), policy: policy, isDeadCommand: Spool.supervisorIsGone)
        guard apply else { return items }
        return applyMaintenance(items, policy: policy) { flowId in
            guard let snap = try? readFlow(flowId) else { return false }
            let gone = Set(snap.tasks.filter(Spool.supervisorIsGone).map(\.taskId))
            return !gone.isEmpty && settled(snap).tasks.contains { gone.contains($0.taskId) && $0.status == .lost }
        }
    }

    /// Records `lost` for every active command task of the flow whose supervisor is gone
    /// (re-checked under the flow lock), ends its command's process group if that is still
    /// the same process, and returns the flow afterwards. Any other flow is returned as is,
    /// without a write.
    func settled(_ snap: FlowSnapshot) -> FlowSnapshot {
        guard snap.tasks.contains(where: Spool.supervisorIsGone) else { return snap }
        do {
            let (lost, after) = try mutate(flow: snap.flow.flowId, source: "runner") { (change) throws(SpoolError) -> [TaskRecord] in
                var lost: [TaskRecord] = []
                for var task in change.tasks.values where Spool.supervisorIsGone(task) {
                    if Spool.waitsAgain(task, of: change.flow) {
                        task.supervisorPid = nil
                        task.supervisorStartTime = nil
                        change.tasks[task.taskId] = task
                        continue
                    }
                    let pid = task.supervisorPid ?? 0
                    _ = Rules.apply(
                        TaskUpdate(status: .lost, fields: [RecordKey.error.rawValue: .string("its supervisor (pid \(pid)) is gone")]), to: &task, at: change.now
                    )
                    change.tasks[task.taskId] = task
                    lost.append(task)
                    // A job run with retries left runs again, as after a failed run (`run
                    // --retries`): the next hand-off of its queue starts the new task.
                    if task.isCommand, let queue = change.flow.queue, change.flow.retriesLeft > 0, change.flow.cancelRequestedAt == nil,
                        task.cancelRequestedAt == nil
                    {
                        _ = try requeue(&change, queue: queue, after: task)
                        change.flow.retriesLeft -= 1
                    }
                }
                return lost
            }
            for task in lost { Spool.endCommand(of: task, grace: 1) }
            return after
        } catch {
            return snap
        }
    }

    /// Whether a task whose supervisor is gone waits for a slot again instead of being lost:
    /// the first command of a queued job that its supervisor never started (no `pid`; its
    /// command runs only after `running` is durable), so a kill -9 or a reboot between the
    /// hand-off and the start neither leaks the slot nor loses the job (spool-layout.md, "Queues").
    static func waitsAgain(_ task: TaskRecord, of flow: FlowRecord) -> Bool {
        task.status == .queued && task.pid == nil && flow.status == .queued && flow.queue != nil
    }

    /// The task `taskId` of a snapshot, or the error for its unreadable file, or not found.
    func task(_ taskId: String, in snap: FlowSnapshot) throws(SpoolError) -> TaskRecord {
        if let t = snap.task(taskId) { return t }
        if let p = snap.problems.first(where: { $0.path.lastComponent?.string == Layout.taskFile(taskId) }) {
            throw SpoolError(.invalidRecord, p.message, path: p.path)
        }
        throw taskNotFound(taskId)
    }

    /// Ends the process group of a command task if its command is still the same process.
    static func endCommand(of task: TaskRecord, grace: Double) {
        guard let pid = task.pid, let pgid = task.pgid, let start = task.procStartTime else { return }
        // The command itself may have exited while others of its group live on: its group
        // is ended if the command is still the recorded process, or if it is gone.
        let command = ProcessIdentity(pid: Int32(pid), startTime: start)
        if command.isAlive || ProcessIdentity.of(Int32(pid)) == nil {
            ProcessGroup.end(Int32(pgid), grace: grace)
        }
    }
}

extension TaskRecord {
    /// The supervisor a command task names, or nil when it names none.
    public var supervisor: ProcessIdentity? {
        guard let pid = supervisorPid, let start = supervisorStartTime else { return nil }
        return ProcessIdentity(pid: Int32(pid), startTime: start)
    }
}
