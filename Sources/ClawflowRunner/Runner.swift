import CSystemShims
import ClawflowModel
import ClawflowSpool
import Glibc
import SystemPackage

/// Commands clawflow runs itself (`clawflow run`): creating their flows and starting their
/// supervisor. Noticing a supervisor that died (`lost`) and stopping commands on cancel are
/// the spool's (`Spool.flow`, `Spool.cancel`), so that every reader and canceller has them.
public struct Runner: Sendable {
    /// The spool the commands are recorded in.
    public let spool: Spool

    /// A runner for `spool`.
    public init(spool: Spool) { self.spool = spool }

    /// What `run` made: the flow and its first task.
    public struct Started: Sendable {
        /// The new flow.
        public var flowId: String
        /// The task now queued to run (a sequence's first step).
        public var taskId: String
        /// Whether its supervisor started at once (else it waits for a slot of its queue).
        public var started: Bool
    }

    /// Where and how a new job waits for its turn.
    public struct Placement: Sendable {
        /// The queue (`Layout.defaultQueue` unless named).
        public var queue: String
        /// Higher starts first; 0 by default.
        public var priority: Int64
        /// How many times a failed or timed-out run goes back to wait for its turn again.
        public var retries: Int64
        /// How long it waits then, in seconds.
        public var retryDelaySeconds: Int64
        /// The flows that must have succeeded before it starts.
        public var after: [String]
        /// A placement in `queue` with `priority`, after the flows `after`, run again up to `retries` times.
        public init(queue: String = Layout.defaultQueue, priority: Int64 = 0, retries: Int64 = 0, retryDelaySeconds: Int64 = 0, after: [String] = []) {
            self.queue = queue
            self.priority = priority
            self.retries = retries
            self.retryDelaySeconds = retryDelaySeconds
            self.after = after
        }
    }

    // MARK: - Starting

    /// `run -- CMD`: a mirrored flow with one `cli` task, put in its queue and started at
    /// once when a slot is free (`enqueue`). May fork (`start`): call it where no other
    /// thread is at work.
    public func run(
        ownerKey: String, goal: String?, timeoutSeconds: Int64?, logLimit: Int64? = nil, cwd: String, command: [String], placement: Placement = Placement(),
        onFinish: String? = nil
    ) throws(SpoolError) -> Started {
        let now = Spool.now()
        let flowId = Spool.newId(at: now)
        var task = spool.commandTask(flowId: flowId, ownerKey: ownerKey, argv: command, cwd: cwd, timeoutSeconds: timeoutSeconds, logLimit: logLimit, at: now)
        task.environment = Runner.currentEnvironment()
        task.notifyCommand = onFinish
        let flow = FlowRecord(flowId: flowId, syncMode: .taskMirrored, ownerKey: ownerKey, controllerId: nil, status: .queued, goal: goal ?? task.task, at: now)
        return try enqueue(flow, first: task, placement: placement)
    }

    /// `run --step CMD ...`: a managed flow (controller `clawflow/sequence`) whose steps run
    /// one after another, each `sh -c CMD`; the first step's task is created with the flow.
    /// The whole sequence holds one slot of its queue. May fork, as `run` does.
    public func runSequence(
        ownerKey: String, goal: String, steps: [String], timeoutSeconds: Int64?, logLimit: Int64? = nil, cwd: String, placement: Placement = Placement(),
        onFinish: String? = nil
    ) throws(SpoolError) -> Started {
        let now = Spool.now()
        let flowId = Spool.newId(at: now)
        var first = spool.commandTask(
            flowId: flowId, ownerKey: ownerKey, argv: ["sh", "-c", steps[0]], cwd: cwd, timeoutSeconds: timeoutSeconds, logLimit: logLimit, at: now)
        first.environment = Runner.currentEnvironment()
        var flow = FlowRecord(
            flowId: flowId, syncMode: .managed, ownerKey: ownerKey, controllerId: Rules.sequenceController, status: .queued, goal: goal, at: now)
        flow[.steps] = .array(
            steps.enumerated().map { index, command in
                var step: [String: JSON] = ["name": .string("step \(index + 1)"), "command": .string(command)]
                if index == 0 { step["taskId"] = .string(first.taskId) }
                return .object(JSONObject(step))
            })
        flow.currentStep = "step 1"
        flow.notifyCommand = onFinish
        return try enqueue(flow, first: first, placement: placement)
    }

    /// Under the queue's lock: creates `flow` (queued, in `placement`'s queue) with its first
    /// task and its waiting entry, durable together, then hands the queue's free slots on
    /// (`handOff`), which starts it when its turn has come.
    func enqueue(_ draft: FlowRecord, first: TaskRecord, placement: Placement) throws(SpoolError) -> Started {
        var flow = draft
        flow.queue = placement.queue
        flow.priority = placement.priority
        flow.after = placement.after
        if placement.retries > 0 {
            flow.retriesLeft = placement.retries
            flow.retryDelaySeconds = placement.retryDelaySeconds
        }
        let queue = try spool.lockQueue(placement.queue)
        let created = try queue.enqueue(flow, tasks: [first], source: "runner")
        let jobs = try queue.handOff(created: created, start: start)
        return Started(flowId: flow.flowId, taskId: first.taskId, started: jobs.running.contains(flow.flowId))
    }

    /// `retry`: runs an ended command job again (spool-layout.md, "Queues", Retry): a new task with
    /// the recorded argv, working directory, environment and time limit, linked to the same
    /// flow (the old task and its log stay), the flow back to `queued` in its queue (its
    /// cancel request cleared), an event `retry`; a sequence goes on from the step that did
    /// not succeed. Refused for a flow still active, one that succeeded, and one with no
    /// command task (its tasks are reported by other programs). May fork, as `run` does.
    public func retry(flowId: String) throws(SpoolError) -> Started {
        let current = try spool.flow(flowId)
        let queueName = current.flow.queue ?? Layout.defaultQueue
        let queue = try spool.lockQueue(queueName)
        try queue.addWaiting(for: current.flow)
        let taskId: String
        do {
            taskId = try spool.mutate(flow: flowId, source: "cli") { (change) throws(SpoolError) -> String in
                try queueRetry(&change, queue: queueName)
            }.result
        } catch {
            queue.removeWaiting(for: current.flow)
            throw error
        }
        let jobs = try queue.handOff(start: start)
        return Started(flowId: flowId, taskId: taskId, started: jobs.running.contains(flowId))
    }

    /// Within a write of the flow: checks it may be retried and adds the new task. Its id.
    func queueRetry(_ change: inout FlowChange, queue: String) throws(SpoolError) -> String {
        let flow = change.flow
        let id = flow.flowId
        guard flow.isTerminal else {
            throw SpoolError(.stillActive, "Flow \(id) is still \(flow.status.rawValue); only a job that has ended can be retried (cancel it first).")
        }
        let commands = change.orderedTasks.filter(\.isCommand)
        guard let last = commands.last, last.command?.isEmpty == false else { throw SpoolError.noCommand(id) }
        guard flow.status != .succeeded else {
            throw SpoolError(.alreadyTerminal, "Flow \(id) succeeded; retry runs again only a job that failed, was cancelled, timed out or was lost.")
        }
        return try spool.requeue(&change, queue: queue, after: last)
    }

    /// The slot hand-off of queue `name` (`LockedQueue.handOff`): called by `run`, by every
    /// finishing supervisor, after a cancel and by the next clawflow command, so that no
    /// watcher is needed. May fork: call it where no other thread is at work.
    @discardableResult
    public func handOff(queue name: String) throws(SpoolError) -> QueueJobs {
        try spool.lockQueue(name).handOff(start: start)
    }

    /// Hands the free slots of every queue with a job in it on (a readdir or two per queue
    /// when it is empty), but `handedOff`, one this process has just handed on under its lock.
    /// Only the spool's owner does (`Spool.isOwnedByCaller`).
    public func handOffWaiting(except handedOff: String? = nil) {
        guard spool.isOwnedByCaller else { return }
        for name in spool.queuesWithJobs() where name != handedOff { _ = try? handOff(queue: name) }
    }

    /// A job a supervisor whose own flow has ended runs next itself, instead of forking a
    /// supervisor for it: its flow, its queue, and its `running/` entry, locked.
    public struct Adopted {
        /// The job's flow.
        public var flowId: String
        /// Its queue.
        public var queue: String
        /// Its `running/` entry, locked (`Spool.lockSlotEntry`), or nil when it could not be.
        public var entry: FileDescriptor?
        /// The flow as the hand-off read it, under the queue's lock: the supervisor starts
        /// from it instead of reading the flow again (each of its writes reads the flow anew
        /// under the flow's lock, so a change since, such as a cancel, is not missed).
        public var snapshot: FlowSnapshot?
    }

    /// A finishing supervisor's hand-off: as `handOffWaiting` (or of `queue` only, for a
    /// member of a shared spool's group), but the first job it starts is returned for the
    /// caller to run, with its entry's lock, and only the others get a supervisor forked:
    /// a queue's jobs then run one after another in one process, as a worker's would.
    public func handOffAdopting(queue: String?) -> Adopted? {
        let names = spool.isOwnedByCaller ? spool.queuesWithJobs() : (queue.map { [$0] } ?? [])
        var adopted: Adopted?
        for name in names {
            _ = try? spool.lockQueue(name).handOff { (snap) throws(SpoolError) in
                guard adopted == nil else { return try start(snap) }
                let queue = snap.flow.queue ?? Layout.defaultQueue
                adopted = Adopted(
                    flowId: snap.flow.flowId, queue: queue, entry: spool.lockSlotEntry(queue: queue, flowId: snap.flow.flowId), snapshot: snap)
            }
        }
        return adopted
    }

    /// Starts the supervisor of a job that holds a slot: a forked copy of this process in a
    /// session of its own (no terminal; stdin, stdout and stderr on /dev/null), so it
    /// outlives the shell that ran `run` and costs no second program start. The job's
    /// `running/` entry is locked before the fork and the child keeps the lock (`SlotHold`),
    /// so no hand-off takes the slot for free meanwhile. The child names itself in the task
    /// in the same write that records its command `running` (`Supervisor.runTask`), which
    /// only a task no live supervisor has taken allows: of two supervisors started for one
    /// job, one runs it. One that dies before that write leaves the job waiting, its entry
    /// unheld, and the next hand-off starts it again. Never returns in the child.
    func start(_ snap: FlowSnapshot) throws(SpoolError) {
        let flowId = snap.flow.flowId
        let queue = snap.flow.queue ?? Layout.defaultQueue
        let entry = spool.lockSlotEntry(queue: queue, flowId: flowId)
        var kept: Int32 = -1
        let pid = clawflow_fork_supervisor(entry?.rawValue ?? -1, &kept)
        if pid == 0 {
            Supervisor.runDetached(
                spoolRoot: spool.root, job: Adopted(flowId: flowId, queue: queue, entry: kept >= 0 ? FileDescriptor(rawValue: kept) : nil, snapshot: snap))
        }
        entry?.closeQuietly()  // the child's copy keeps the lock
        guard pid > 0 else {
            let error = Errno(rawValue: errno)
            throw SpoolError(.io, "Starting the supervisor of flow \(flowId) (fork): \(error.description); it waits for the next hand-off.", errno: error)
        }
    }

    /// This process's environment, recorded with a command so that whoever starts it later
    /// (a hand-off in another process, `retry`) runs it with the same.
    static func currentEnvironment() -> [String: String] {
        var out: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            // Split at the first "=" on the bytes (a Character walk of a 35-entry environment
            // took 0.34 M instructions, 8 % of `run`'s own work, in callgrind).
            let bytes = UnsafeRawBufferPointer(start: entry, count: strlen(entry))
            if let eq = bytes.firstIndex(of: UInt8(ascii: "=")) {
                out[String(decoding: bytes[..<eq], as: UTF8.self)] = String(decoding: bytes[(eq + 1)...], as: UTF8.self)
            }
            p += 1
        }
        return out
    }
}
