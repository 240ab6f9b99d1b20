import CSystemShims
import ClawflowModel
import ClawflowSpool
import Glibc
import SystemPackage

/// The process that runs a flow's commands (forked by `run` into a session of its own,
/// `Runner.createSupervised`): it starts each queued `cli` task in a process group of its
/// own, records it `running`, waits for it (ending the group on timeout), records how it
/// ended, and for a sequence creates and runs the next step while the previous succeeded.
/// Every record goes through the one mutation path; no watcher is needed. Every task it will
/// run names it (`supervisorPid`) from its creation on, so if it dies at any point, between
/// steps too, the task it would have run next is found `lost`.
public struct Supervisor: Sendable {
    /// The spool of the flow.
    public let spool: Spool
    /// The flow whose commands this supervisor runs.
    public let flowId: String
    /// Seconds a timed-out command's group gets between SIGTERM and SIGKILL.
    public static let timeoutGrace = 5.0

    /// A supervisor for `flowId`.
    public init(spool: Spool, flowId: String) {
        self.spool = spool
        self.flowId = flowId
    }

    /// The forked child's whole life: opens the spool at `spoolRoot` with descriptors of its
    /// own (the parent's share file offsets with it), holds the job's slot of its queue (the
    /// locked entry its parent handed it, `SlotHold`), runs the flow's commands, gives
    /// the slot back when the flow has ended and hands the slots on — running the first job
    /// that hand-off starts itself, and so on while jobs wait (`Runner.handOffAdopting`) —
    /// and exits (0, or 1 when it could not; a task it leaves active is then found `lost`).
    static func runDetached(spoolRoot: FilePath, job first: Runner.Adopted) -> Never {
        FileDescriptor.flushHelpersAreShortLived()
        guard let spool = try? Spool.openExisting(at: spoolRoot) else { _exit(1) }
        var code: Int32 = 1
        var job: Runner.Adopted? = first
        while let current = job {
            let flow: FlowRecord?
            (flow, code) = runHoldingSlot(spool, current)
            // Its slot is free now: the next waiting job of its queue starts, and jobs of any
            // queue that run after this flow start or are cancelled (no watcher needed). A
            // member of a shared spool's group hands on the slots of its own queue only.
            job = Runner(spool: spool).handOffAdopting(queue: flow?.queue)
        }
        _exit(code)
    }

    /// Runs the job's flow holding its slot, and gives the slot back (removing its entry) when
    /// the flow has ended: the flow as it is then, and the exit status so far.
    static func runHoldingSlot(_ spool: Spool, _ job: Runner.Adopted) -> (FlowRecord?, Int32) {
        let slot = job.entry.flatMap { spool.slotHold(queue: job.queue, flowId: job.flowId, entry: $0) }
        var code: Int32 = 0
        var flow: FlowRecord?
        let moveFlush = job.moveUnflushed ? spool.queueMoveFlush(job.queue) : []
        do { flow = try Supervisor(spool: spool, flowId: job.flowId).run(from: job.snapshot, flushingFirst: moveFlush) } catch { code = 1 }
        if flow == nil { flow = (try? spool.flow(job.flowId))?.flow }
        if flow?.isTerminal == true { slot?.removeEntry() }
        return (flow, code)
    }

    /// Runs the flow's commands until none is left to run; the flow as last read. It starts
    /// from `known` when given (as a hand-off read it), and goes on from what each of its
    /// writes found under the flow's lock, so it reads the flow itself only when it has
    /// neither. `flushingFirst` joins the first barrier of its first write (or is flushed
    /// before it returns, when it makes none).
    @discardableResult
    public func run(from known: FlowSnapshot? = nil, flushingFirst: [AlsoFlushed] = []) throws(SpoolError) -> FlowRecord {
        // Orphaned descendants of the commands are re-parented here and reaped.
        _ = clawflow_become_subreaper()
        let me = ProcessIdentity.current
        var known = known
        var first = flushingFirst
        defer { Supervisor.flushNow(first) }
        while true {
            let snap: FlowSnapshot
            if let last = known {
                snap = last
                known = nil
            } else {
                do { snap = try spool.flow(flowId) } catch { throw error }
            }
            // A queued command no other supervisor has taken (this one names itself in the
            // task when it records it running).
            if let task = snap.tasks.first(where: {
                $0.isCommand && $0.status == .queued && $0.pid == nil && ($0.supervisorPid ?? Int64(me.pid)) == Int64(me.pid)
            }) {
                // A retry after a failed, timed-out or lost run waits --retry-delay first.
                let previous = snap.tasks.last { $0.isCommand && $0.taskId != task.taskId }
                if snap.flow.retryDelaySeconds > 0, let previous, [.failed, .timedOut, .lost].contains(previous.status) {
                    waitBeforeRetry(task.taskId, seconds: snap.flow.retryDelaySeconds)
                    if (try? spool.task(flowId: flowId, taskId: task.taskId))?.status != .queued { continue }
                }
                let extra = first
                first = []
                known = try runTask(task, supervisor: me, alsoFlushing: extra)
                continue
            }
            // Normally the write that records a step's success queued the next one already.
            guard try startNextStep(snap, supervisor: me) else { return snap.flow }
        }
    }

    /// For a sequence whose steps so far all succeeded: creates the next step's task (and
    /// names it in `steps`). False when there is nothing more to run.
    func startNextStep(_ snap: FlowSnapshot, supervisor me: ProcessIdentity) throws(SpoolError) -> Bool {
        // Most flows are no sequence, or have ended: no write (and no lock) for those.
        guard snap.flow.controllerId == Rules.sequenceController, !snap.flow.isTerminal, snap.flow.cancelRequestedAt == nil else { return false }
        do {
            return try spool.mutate(flow: flowId, source: "runner") { (change) throws(SpoolError) -> Bool in
                queueNextStep(&change, supervisor: me)
            }.result
        } catch {
            throw error
        }
    }

    /// Within a write of the flow: when it is a sequence that is neither ended nor asked to
    /// cancel and every step so far succeeded, adds the next step's task (queued, naming this
    /// supervisor) and names it in `steps` and `currentStep`. Whether it added one.
    func queueNextStep(_ change: inout FlowChange, supervisor me: ProcessIdentity) -> Bool {
        guard change.flow.controllerId == Rules.sequenceController, !change.flow.isTerminal, change.flow.cancelRequestedAt == nil,
            var steps = change.flow[.steps]?.arrayValue
        else { return false }
        guard let index = steps.firstIndex(where: { $0.objectValue?["taskId"] == nil }) else { return false }
        let tasks = change.tasks
        let done = steps[..<index].allSatisfy { step in
            step.objectValue?["taskId"]?.stringValue.flatMap { tasks[$0] }?.status == .succeeded
        }
        guard done, var step = steps[index].objectValue, let command = step["command"]?.stringValue else { return false }
        let previous = steps[..<index].last?.objectValue?["taskId"]?.stringValue.flatMap { tasks[$0] }
        var task = spool.commandTask(
            flowId: flowId, ownerKey: change.flow.ownerKey, argv: ["sh", "-c", command],
            cwd: previous?.cwd ?? "/", timeoutSeconds: previous?.timeoutSeconds,
            logLimit: previous?.logLimit, at: change.now)
        task.environment = previous?.environment
        task.supervisorPid = Int64(me.pid)
        task.supervisorStartTime = me.startTime
        change.tasks[task.taskId] = task
        step["taskId"] = .string(task.taskId)
        steps[index] = .object(step)
        change.flow[.steps] = .array(steps)
        change.flow.currentStep = step["name"]?.stringValue
        return true
    }

    /// Sleeps `seconds`, looking every second whether the task is still queued (a cancel
    /// ends the wait).
    func waitBeforeRetry(_ taskId: String, seconds: Int64) {
        let end = monotonicSeconds() + Double(seconds)
        while monotonicSeconds() < end {
            usleep(UInt32(min(1.0, max(0, end - monotonicSeconds())) * 1_000_000))
            guard let task = try? spool.task(flowId: flowId, taskId: taskId), task.status == .queued, task.cancelRequestedAt == nil else { return }
        }
    }

    /// Within the write that records a failed or timed-out run of a flow with retries left
    /// (`run --retries`): the run again, as `clawflow retry` makes it (a new task, the flow
    /// back to `queued`, an event `retry`), one retry fewer left, the new task naming this
    /// supervisor, which keeps the job's slot and runs it.
    func queueAutomaticRetry(_ change: inout FlowChange, after task: TaskRecord, supervisor me: ProcessIdentity) throws(SpoolError) {
        let id = try spool.requeue(&change, queue: change.flow.queue ?? Layout.defaultQueue, after: task)
        change.flow.retriesLeft -= 1
        change.tasks[id]?.supervisorPid = Int64(me.pid)
        change.tasks[id]?.supervisorStartTime = me.startTime
    }

    /// Starts one command, records it running, waits, records its end; the flow as that last
    /// write left it. `extra` joins the first barrier of its first write.
    func runTask(_ task: TaskRecord, supervisor me: ProcessIdentity, alsoFlushing extra: [AlsoFlushed] = []) throws(SpoolError) -> FlowSnapshot {
        let taskId = task.taskId
        let argv = task[.command]?.arrayValue?.compactMap(\.stringValue) ?? []
        let logPath = FilePath(task.logPath ?? spool.taskLogPath(flowId: flowId, taskId: taskId).string)
        var log: TaskLog
        do {
            log = try TaskLog(path: logPath, limit: task.logLimit ?? LogCut.defaultLimit)
        } catch {
            return try record(taskId, TaskUpdate(status: .failed, [.error: .string("could not open the log \(logPath): \(error)")]), flushing: extra)
        }
        // The log's name becomes durable with the task file's next flush of tasks/; its inode
        // too, except where metadata is not ordered (ext4 without a journal), where a power
        // cut could otherwise keep the name naming an inode reused by another file: there the
        // log joins the first barrier of the task's next write.
        let newLog = extra + (MetadataOrdering.isOrdered(log.fd) ? [] : [.file(log.fd, logPath)])
        guard !argv.isEmpty else {
            return try record(taskId, TaskUpdate(status: .failed, [.error: .string("the task has no command")]), flushing: newLog)
        }
        // The command writes into a pipe that this supervisor relays into the log, so that it
        // can cut the log at its limit (`TaskLog`) while the command writes on.
        var ends: [Int32] = [-1, -1]
        // (pipe2 is hidden from Swift; this process starts no other program meanwhile.)
        guard pipe(&ends) == 0, fcntl(ends[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(ends[1], F_SETFD, FD_CLOEXEC) == 0 else {
            let error = Errno(rawValue: errno)
            for end in ends where end >= 0 { close(end) }
            return try recordNotStarted(taskId, argv: argv, error: error, log: &log, flushing: newLog)
        }
        let output = FileDescriptor(rawValue: ends[1])
        var relay = OutputRelay(FileDescriptor(rawValue: ends[0]))
        defer { relay.close() }
        // Held before its exec until `running` (with its pid) is durable: a supervisor that
        // dies before that leaves no command running untracked.
        let held: HeldCommand
        // The job knows itself (nq's NQJOBID): it can report with clawflow tasks set "$CLAWFLOW_TASK_ID".
        var here = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let root = spool.root.isAbsolute ? spool.root : FilePath(getcwd(&here, here.count).map { String(cString: $0) } ?? "/").pushing(spool.root)
        // The program is looked up in the PATH it was run with, whoever started its supervisor.
        if let path = task.environment?["PATH"] { setenv("PATH", path, 1) }
        let ids = ["CLAWFLOW_FLOW_ID": flowId, "CLAWFLOW_TASK_ID": taskId, "CLAWFLOW_SPOOL": root.string]
        do {
            held = try HeldCommand(argv, output: output, cwd: task.cwd, environment: task.environment, setting: ids)
            output.closeQuietly()  // the command's copies are its only writers: their end is the relay's EOF
        } catch {
            output.closeQuietly()
            return try recordNotStarted(taskId, argv: argv, error: error, log: &log, flushing: newLog)
        }
        let pid = held.pid
        let pidfd = clawflow_pidfd_open(pid)
        defer { if pidfd >= 0 { close(pidfd) } }
        let start = ProcStat(pid: pid)?.startTime ?? 0
        let running = TaskUpdate(
            status: .running,
            [
                .pid: .int(Int64(pid)), .pgid: .int(Int64(pid)), .procStartTime: .int(start),
                .supervisorPid: .int(Int64(me.pid)), .supervisorStartTime: .int(me.startTime),
            ])
        let (claimed, snapshot) = try claim(taskId, running, supervisor: me, flushing: newLog)
        switch claimed {
        case .run: break
        case .stop:
            // Cancelled (or ended by someone else) before its exec: the held child is let go
            // unreleased and exits without running anything.
            _ = consume held
            var status: Int32 = 0
            _ = valueOrErrno { waitpid(pid, &status, 0) }
            return try record(taskId, TaskUpdate(status: .cancelled, [.error: .string("cancelled before the command started")]))
        case .takenByAnother:
            // Another supervisor started for the same job got there first: it runs it.
            _ = consume held
            var status: Int32 = 0
            _ = valueOrErrno { waitpid(pid, &status, 0) }
            return snapshot
        }
        if let error = held.start() {
            var status: Int32 = 0
            _ = valueOrErrno { waitpid(pid, &status, 0) }
            return try recordNotStarted(taskId, argv: argv, error: error, log: &log)
        }

        // Wait for the command, ending its group at the deadline.
        let deadline = task.timeoutSeconds.map { monotonicSeconds() + Double($0) }
        var status: Int32?
        var timedOut = false
        while status == nil {
            var wait: Int32 = 1000
            if let deadline, !timedOut { wait = Int32(max(0, min(1000, (deadline - monotonicSeconds()) * 1000))) }
            // Without a pidfd (old kernels) the exit is looked for every 50 ms.
            var fds = [pollfd(fd: relay.fd, events: Int16(POLLIN), revents: 0), pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)]
            _ = poll(&fds, 2, pidfd >= 0 ? wait : min(wait, 50))
            relay.pass(into: &log)
            status = reapChildren(main: pid)
            if status == nil, let deadline, !timedOut, monotonicSeconds() >= deadline {
                timedOut = true
                ProcessGroup.end(pid, grace: Supervisor.timeoutGrace, reap: { if let s = reapChildren(main: pid) { status = s } })
            }
        }
        // A timed-out command takes its whole group with it.
        if timedOut { ProcessGroup.end(pid, grace: Supervisor.timeoutGrace, reap: { _ = reapChildren(main: pid) }) }
        // What the command wrote before it exited is in the pipe; a process it left running
        // gets EPIPE (or SIGPIPE) when it writes after this.
        relay.pass(into: &log)
        // The write that records the end finds, under the flow's lock, whether a cancel was
        // asked for (then the end is `cancelled`). A cancelled command takes its whole group
        // with it too, before the write: when members of the group are left, the write is
        // made after they are ended. The same write queues a sequence's next step when this
        // one succeeded: there is no moment in which the flow has no active task naming this
        // supervisor and still more to run.
        let exit = status!
        let written = try record(taskId, thenQueueNextStepOf: me) { (cancelled) -> TaskUpdate? in
            if cancelled, !timedOut, ProcessGroup.isAlive(pid) { return nil }
            return Supervisor.outcome(status: exit, timedOut: timedOut, cancelled: cancelled, timeout: task.timeoutSeconds)
        }
        if let snapshot = written { return snapshot }
        ProcessGroup.end(pid, grace: Supervisor.timeoutGrace, reap: { _ = reapChildren(main: pid) })
        relay.pass(into: &log)
        return try record(
            taskId, Supervisor.outcome(status: exit, timedOut: timedOut, cancelled: true, timeout: task.timeoutSeconds), thenQueueNextStepOf: me)
    }

    /// Records that the command could not be started (not found, not executable, no such
    /// working directory), with the reason in the task and in its log.
    /// (`flushing`: the log, when this is its first write, as in `record`.)
    func recordNotStarted(_ taskId: String, argv: [String], error: Errno, log: inout TaskLog, flushing newLog: [AlsoFlushed] = [])
        throws(SpoolError) -> FlowSnapshot
    {
        let message = "could not start \(sanitized(argv[0])): \(error.description)"
        log.append(line: "clawflow: \(message)")
        return try record(taskId, TaskUpdate(status: .failed, [.error: .string(message), .exitCode: .int(127)]), flushing: newLog)
    }

    /// The task update for how a command ended.
    static func outcome(status: Int32, timedOut: Bool, cancelled: Bool, timeout: Int64?) -> TaskUpdate {
        let exited = status & 0x7F == 0
        let code = Int64((status >> 8) & 0xFF)
        let signal = status & 0x7F
        if cancelled { return TaskUpdate(status: .cancelled, exited ? [.exitCode: .int(code)] : [.signal: .string(SignalName.of(signal))]) }
        if timedOut {
            var fields: [RecordKey: JSON] = [.error: .string("timed out after \(timeout ?? 0) s; its process group was ended")]
            if !exited { fields[.signal] = .string(SignalName.of(signal)) }
            return TaskUpdate(status: .timedOut, fields)
        }
        if exited {
            if code == 0 { return TaskUpdate(status: .succeeded, [.exitCode: .int(0)]) }
            return TaskUpdate(status: .failed, [.exitCode: .int(code), .error: .string("exited with code \(code)")])
        }
        let name = SignalName.of(signal)
        return TaskUpdate(status: .failed, [.signal: .string(name), .error: .string("killed by \(name)")])
    }

    /// What the write that records a command `running` found.
    enum Claim {
        /// The task is this supervisor's now: release the command.
        case run
        /// The task ended, or a cancel was asked for: the command must not start.
        case stop
        /// Another live supervisor had named itself in the task: it runs the command.
        case takenByAnother
    }

    /// Records the command `running` and this supervisor in the task (`update` carries both),
    /// in one write, unless another supervisor has named itself in the task meanwhile.
    /// A `newLog` joins the write's first barrier (`Spool.mutate`).
    func claim(_ taskId: String, _ update: TaskUpdate, supervisor me: ProcessIdentity, flushing newLog: [AlsoFlushed])
        throws(SpoolError)
        -> (Claim, FlowSnapshot)
    {
        do {
            return try spool.mutate(flow: flowId, source: "runner", flushing: newLog) { (change) throws(SpoolError) -> Claim in
                guard var task = change.tasks[taskId] else { throw SpoolError.taskNotFound(taskId) }
                if task.status.isTerminal { return .stop }
                if let other = task.supervisor, other != me { return .takenByAnother }
                if task.cancelRequestedAt != nil || change.flow.cancelRequestedAt != nil { return .stop }
                _ = Rules.apply(update, to: &task, at: change.now)
                change.tasks[taskId] = task
                return .run
            }
        } catch {
            throw error
        }
    }

    /// Writes an update of the task (nothing when the task is already final, e.g. cancelled
    /// by `flows cancel` meanwhile); with `supervisor`, the same write queues a sequence's
    /// next step (`queueNextStep`). Returns the flow as the write left it.
    @discardableResult
    func record(
        _ taskId: String, _ update: TaskUpdate, thenQueueNextStepOf supervisor: ProcessIdentity? = nil,
        flushing newLog: [AlsoFlushed] = []
    ) throws(SpoolError) -> FlowSnapshot {
        // (An update that is always made: the write happens, so there is a snapshot.)
        try record(taskId, thenQueueNextStepOf: supervisor, flushing: newLog) { _ in update }!
    }

    /// `record`, with the update chosen under the flow's lock: `update` is told whether a
    /// cancel was asked for the task, and returns nil to write nothing now (the result is
    /// then nil too).
    func record(
        _ taskId: String, thenQueueNextStepOf supervisor: ProcessIdentity? = nil, flushing newLog: [AlsoFlushed] = [],
        _ update: (_ cancelRequested: Bool) -> TaskUpdate?
    ) throws(SpoolError) -> FlowSnapshot? {
        defer { Deliverer.kick(spool, source: "runner") }  // a notification this write recorded goes out at once
        do {
            let (written, snapshot) = try spool.mutate(flow: flowId, source: "runner", flushing: newLog) { (change) throws(SpoolError) -> Bool in
                guard var task = change.tasks[taskId] else { throw SpoolError.taskNotFound(taskId) }
                if task.status.isTerminal { return true }
                guard let update = update(task.cancelRequestedAt != nil) else { return false }
                _ = Rules.apply(update, to: &task, at: change.now)
                change.tasks[taskId] = task
                if let supervisor { _ = queueNextStep(&change, supervisor: supervisor) }
                if let supervisor, [.failed, .timedOut].contains(task.status), change.flow.retriesLeft > 0,
                    change.flow.cancelRequestedAt == nil, task.cancelRequestedAt == nil
                {
                    try queueAutomaticRetry(&change, after: task, supervisor: supervisor)
                }
                return true
            }
            return written ? snapshot : nil
        } catch {
            throw error
        }
    }
}

extension Supervisor {
    /// Flushes what a write was to carry when none was made, and closes the directories.
    static func flushNow(_ items: [AlsoFlushed]) {
        for item in items {
            switch item {
            case .file(let fd, _): try? fd.synchronize()
            case .directory(let fd, _):
                try? fd.synchronize()
                fd.closeQuietly()
            }
        }
    }
}

/// The supervisor's end of the pipe a command writes its output into.
struct OutputRelay {
    /// The read end (-1 once it reached its end or was closed).
    private(set) var fd: Int32
    /// Where output is read into: made once (zeroing 64 KiB at every wake-up cost more than
    /// the rest of a quiet command's relay).
    private var buffer = [UInt8](repeating: 0, count: 65536)

    init(_ end: FileDescriptor) {
        fd = end.rawValue
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Passes everything readable now into `log`; at the end of the output (every writer
    /// gone), closes the pipe.
    mutating func pass(into log: inout TaskLog) {
        guard fd >= 0 else { return }
        let fd = fd
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                buffer.withUnsafeBytes { log.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                continue
            }
            if n < 0, errno == EINTR { continue }
            if n == 0 { close() }
            return
        }
    }

    /// Closes the read end.
    mutating func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}

/// Reaps every exited child (orphans re-parented to this subreaper included); returns the
/// wait status of `main` if it was among them.
func reapChildren(main: Int32) -> Int32? {
    var mainStatus: Int32?
    while true {
        var status: Int32 = 0
        let pid = waitpid(-1, &status, WNOHANG)
        if pid <= 0 { break }
        if pid == main { mainStatus = status }
    }
    return mainStatus
}

func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}
