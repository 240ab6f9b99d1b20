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
        let flow = FlowRecord(flowId: flowId, syncMode: .taskMirrored, ownerKey: ownerKey, controllerId: nil, status: .queued, goal: goal ?? task.task, at: now)
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
        flow[.steps] = .array(steps.enumerated().map { index, command in
            var step: [String: JSON] = ["name": .string("step \(index + 1)"), "command": .string(command)]
            if index == 0 { step["taskId"] = .string(first.taskId) }
            return .object(JSONObject(step))
        })
        flow.currentStep = "step 1"
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
        task.supervisorPid = Int64(identity.pid)
        task.supervisorStartTime = identity.startTime
        do {
            _ = try spool.create(flow: flow, tasks: [task], source: "runner")
        } catch {
            close(release) // the child exits without running anything
            throw error
        }
        if clawflow_release(release, 0) != 0 {
            _ = try? spool.flow(flow.flowId) // it died before its release: a read records its task lost now
        }
    }

    /// A queued `cli` task record for `argv`.
    func commandTask(flowId: String, ownerKey: String, argv: [String], cwd: String, timeoutSeconds: Int64?, at now: Timestamp) -> TaskRecord {
        let taskId = Spool.newId(at: now)
        var task = TaskRecord(taskId: taskId, flowId: flowId, ownerKey: ownerKey, runtime: "cli", status: .queued, at: now)
        task[.command] = .array(argv.map(JSON.string))
        let isShellStep = argv.count == 3 && argv[0] == "sh" && argv[1] == "-c"
        task.task = isShellStep ? argv[2] : argv.map(Runner.shellWord).joined(separator: " ")
        task.cwd = cwd
        task.timeoutSeconds = timeoutSeconds
        task.logPath = spool.taskLogPath(flowId: flowId, taskId: taskId).string
        return task
    }

    /// A word as a shell would need it quoted (for the `task` text only).
    static func shellWord(_ word: String) -> String {
        let plain = !word.isEmpty && word.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || "-_./=:@%+,".utf8.contains(b)
        }
        return plain ? word : "'" + word.replacingAll("'", with: "'\\''") + "'"
    }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
