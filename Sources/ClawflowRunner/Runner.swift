import CSystemShims
import ClawflowModel
import ClawflowSpool
import Glibc
import SystemPackage

/// Commands clawflow runs itself (`clawflow run`): creating their flows, starting their
/// supervisor, noticing when a supervisor died (`lost`) and stopping them on cancel.
public struct Runner: Sendable {
    /// The spool the commands are recorded in.
    public let spool: Spool

    /// A runner for `spool`.
    public init(spool: Spool) { self.spool = spool }

    /// What `run` started: the flow and its first task.
    public struct Started: Sendable {
        /// The new flow.
        public var flowId: String
        /// The task now queued to run (a sequence's first step).
        public var taskId: String
    }

    // MARK: - Starting

    /// `run -- CMD`: a mirrored flow with one `cli` task, started detached. Forks this
    /// process for the supervisor (`createSupervised`): call it where no other thread is at work.
    public func run(ownerKey: String, goal: String?, timeoutSeconds: Int64?, cwd: String, command: [String]) throws(SpoolError) -> Started {
        let now = Spool.now()
        let flowId = Spool.newId(at: now)
        let task = commandTask(flowId: flowId, ownerKey: ownerKey, argv: command, cwd: cwd, timeoutSeconds: timeoutSeconds, at: now)
        let flow = FlowRecord(flowId: flowId, syncMode: .taskMirrored, ownerKey: ownerKey, controllerId: nil, status: .queued, goal: goal ?? task.string("task"), at: now)
        try createSupervised(flow, first: task)
        return Started(flowId: flowId, taskId: task.taskId)
    }

    /// `run --step CMD ...`: a managed flow (controller `clawflow/sequence`) whose steps run
    /// one after another, each `sh -c CMD`; the first step's task is created with the flow.
    /// Forks this process for the supervisor, as `run` does.
    public func runSequence(ownerKey: String, goal: String, steps: [String], timeoutSeconds: Int64?, cwd: String) throws(SpoolError) -> Started {
        let now = Spool.now()
        let flowId = Spool.newId(at: now)
        let first = commandTask(flowId: flowId, ownerKey: ownerKey, argv: ["sh", "-c", steps[0]], cwd: cwd, timeoutSeconds: timeoutSeconds, at: now)
        var flow = FlowRecord(flowId: flowId, syncMode: .managed, ownerKey: ownerKey, controllerId: Rules.sequenceController, status: .queued, goal: goal, at: now)
        flow.fields["steps"] = .array(steps.enumerated().map { index, command in
            var step: [String: JSON] = ["name": .string("step \(index + 1)"), "command": .string(command)]
            if index == 0 { step["taskId"] = .string(first.taskId) }
            return .object(JSONObject(step))
        })
        flow.setString("currentStep", "step 1")
        try createSupervised(flow, first: first)
        return Started(flowId: flowId, taskId: first.taskId)
    }

    /// Creates `flow` with its first task and starts the flow's supervisor: a forked copy of
    /// this process in a session of its own (no terminal; stdin, stdout and stderr on
    /// /dev/null), so it outlives the shell that ran `run` and costs no second program start.
    /// The fork comes first and the child waits (`clawflow_fork_supervisor`): the task is
    /// created naming its supervisor, so from its first record on, a supervisor that dies
    /// leaves it `lost`, never queued for ever. The child is let go once the flow is
    /// durable, and exits unreleased when the creation fails; it never returns from here
    /// (it opens the spool afresh, supervises, and exits). Call this only from a process
    /// whose other threads are idle (the command line: `run` forks before it prints).
    func createSupervised(_ flow: FlowRecord, first: TaskRecord) throws(SpoolError) {
        var release: Int32 = -1
        let pid = clawflow_fork_supervisor(&release)
        if pid == 0 { Supervisor.runDetached(spoolRoot: spool.root, flowId: flow.flowId) }
        guard pid > 0 else {
            let error = Errno(rawValue: errno)
            throw SpoolError(.io, "Starting the supervisor of a new flow for \(sanitized(flow.ownerKey)) (fork): \(error.description); nothing was created.", errno: error)
        }
        var task = first
        // The child waits for its release, so it is there to be read.
        let identity = ProcessIdentity.of(pid) ?? ProcessIdentity(pid: pid, startTime: 0)
        task.setInteger("supervisorPid", Int64(identity.pid))
        task.setInteger("supervisorStartTime", identity.startTime)
        do {
            _ = try spool.create(flow: flow, tasks: [task], source: "runner")
        } catch {
            close(release) // the child exits without running anything
            throw error
        }
        if clawflow_release(release, 0) != 0, let snap = try? spool.readFlow(flow.flowId) {
            _ = settle(snap) // it died before its release: its task is lost now, not at the next read
        }
    }

    /// A queued `cli` task record for `argv`.
    func commandTask(flowId: String, ownerKey: String, argv: [String], cwd: String, timeoutSeconds: Int64?, at now: Timestamp) -> TaskRecord {
        let taskId = Spool.newId(at: now)
        var task = TaskRecord(taskId: taskId, flowId: flowId, ownerKey: ownerKey, runtime: "cli", status: .queued, at: now)
        task.fields["command"] = .array(argv.map(JSON.string))
        let isShellStep = argv.count == 3 && argv[0] == "sh" && argv[1] == "-c"
        task.setString("task", isShellStep ? argv[2] : argv.map(Runner.shellWord).joined(separator: " "))
        task.setString("cwd", cwd)
        task.setInteger("timeoutSeconds", timeoutSeconds)
        task.setString("logPath", spool.taskLogPath(flowId: flowId, taskId: taskId).string)
        return task
    }

    /// A word as a shell would need it quoted (for the `task` text only).
    static func shellWord(_ word: String) -> String {
        let plain = !word.isEmpty && word.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || "-_./=:@%+,".utf8.contains(b)
        }
        return plain ? word : "'" + word.replacingAll("'", with: "'\\''") + "'"
    }

    // MARK: - Lost

    /// Whether an active command task's supervisor is gone (dead, or its pid reused).
    public static func supervisorIsGone(_ task: TaskRecord) -> Bool {
        guard task.isCommand, task.status.isActive,
              let pid = task.integer("supervisorPid"), let start = task.integer("supervisorStartTime")
        else { return false }
        return !ProcessIdentity(pid: Int32(pid), startTime: start).isAlive
    }

    /// Records `lost` for every active command task of the flow whose supervisor is gone
    /// (re-checked under the flow lock), ends its command's process group if that is still
    /// the same process, and returns the flow afterwards. Any other flow is returned as is.
    public func settle(_ snap: FlowSnapshot) -> FlowSnapshot {
        guard snap.tasks.contains(where: Runner.supervisorIsGone) else { return snap }
        do {
            let (lost, after) = try spool.mutate(flow: snap.flow.flowId, source: "runner") { (change) throws(SpoolError) -> [TaskRecord] in
                var lost: [TaskRecord] = []
                for var task in change.tasks.values where Runner.supervisorIsGone(task) {
                    let pid = task.integer("supervisorPid") ?? 0
                    _ = Rules.apply(TaskUpdate(status: .lost, fields: ["error": .string("its supervisor (pid \(pid)) is gone")]), to: &task, at: change.now)
                    change.tasks[task.taskId] = task
                    lost.append(task)
                }
                return lost
            }
            for task in lost { Runner.endCommand(of: task, grace: 1) }
            return after
        } catch {
            return snap
        }
    }

    /// Ends the process group of a command task if its command is still the same process.
    static func endCommand(of task: TaskRecord, grace: Double) {
        guard let pid = task.integer("pid"), let pgid = task.integer("pgid"), let start = task.integer("procStartTime") else { return }
        // The command itself may have exited while others of its group live on: its group
        // is ended if the command is still the recorded process, or if it is gone.
        let command = ProcessIdentity(pid: Int32(pid), startTime: start)
        if command.isAlive || ProcessIdentity.of(Int32(pid)) == nil {
            ProcessGroup.end(Int32(pgid), grace: grace)
        }
    }

    // MARK: - Maintenance

    /// One maintenance pass (`clawflow maintenance`, and the watcher's timer): scan, plan,
    /// and with `apply` carry the plan out; command tasks whose supervisor is gone are
    /// recorded lost by `settle`.
    public func maintain(policy: MaintenancePolicy, apply: Bool) throws(SpoolError) -> [MaintenanceItem] {
        let scan: SpoolScan
        do { scan = try spool.scan() } catch { throw error }
        let items = spool.planMaintenance(scan, policy: policy, isDeadCommand: Runner.supervisorIsGone)
        guard apply else { return items }
        return spool.applyMaintenance(items, policy: policy) { flowId in
            guard let snap = try? spool.readFlow(flowId) else { return false }
            let gone = Set(snap.tasks.filter(Runner.supervisorIsGone).map(\.taskId))
            return !gone.isEmpty && settle(snap).tasks.contains { gone.contains($0.taskId) && $0.status == .lost }
        }
    }

    // MARK: - Cancel

    /// Stops the flow's active command tasks (all, or those in `only`): SIGTERM to each
    /// process group, SIGKILL after `grace` seconds, and waits until no process of the group
    /// is left; records each `cancelled` (the flow then finalises by the rules). Call after
    /// the cancel request is recorded, so the supervisor records `cancelled` too.
    public func stopCommands(flowId: String, only: Set<String>? = nil, grace: Double) throws(SpoolError) -> FlowSnapshot {
        let snap: FlowSnapshot
        do { snap = try spool.readFlow(flowId) } catch { throw error }
        let targets = snap.tasks.filter { $0.isCommand && $0.status.isActive && (only?.contains($0.taskId) ?? true) }
        guard !targets.isEmpty else { return snap }
        for task in targets { Runner.endCommand(of: task, grace: grace) }
        let ids = Set(targets.map(\.taskId))
        do {
            return try spool.mutate(flow: flowId, source: "runner") { (change) throws(SpoolError) in
                for var task in change.tasks.values where ids.contains(task.taskId) && task.status.isActive {
                    _ = Rules.apply(TaskUpdate(status: .cancelled), to: &task, at: change.now)
                    change.tasks[task.taskId] = task
                }
            }.snapshot
        } catch {
            throw error
        }
    }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
