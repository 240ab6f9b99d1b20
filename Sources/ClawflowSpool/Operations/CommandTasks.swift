import ClawflowModel

/// Command tasks (`runtime` `cli`), as `run`, `retry` and automatic retries make them.
extension Spool {
    /// A queued `cli` task record for `argv`; its log is kept under `logLimit` bytes
    /// (`LogCut.defaultLimit` when nil), recorded in the task.
    public func commandTask(
        flowId: String, ownerKey: String, argv: [String], cwd: String, timeoutSeconds: Int64?, logLimit: Int64?, at now: Timestamp
    ) -> TaskRecord {
        let taskId = Spool.newId(at: now)
        var task = TaskRecord(taskId: taskId, flowId: flowId, ownerKey: ownerKey, runtime: "cli", status: .queued, at: now)
        task[.command] = .array(argv.map(JSON.string))
        let isShellStep = argv.count == 3 && argv[0] == "sh" && argv[1] == "-c"
        task.task = isShellStep ? argv[2] : CommandText.line(argv)
        task.cwd = cwd
        task.timeoutSeconds = timeoutSeconds
        task.logLimit = logLimit ?? LogCut.defaultLimit
        task.logPath = taskLogPath(flowId: flowId, taskId: taskId).string
        return task
    }

    /// Within a write of the flow: adds the task that runs its job again after `last` (its
    /// last command task) and puts the flow back to `queued` (`retry`, a supervisor's
    /// automatic retry, and a reader's of a lost run with retries left, `settled`). The new task's id.
    public func requeue(_ change: inout FlowChange, queue: String, after last: TaskRecord) throws(SpoolError) -> String {
        let flow = change.flow
        let id = flow.flowId
        guard let argv = last.command, !argv.isEmpty else { throw SpoolError.noCommand(id) }
        var task = commandTask(
            flowId: id, ownerKey: flow.ownerKey, argv: argv, cwd: last.cwd ?? "/", timeoutSeconds: last.timeoutSeconds, logLimit: last.logLimit, at: change.now)
        task.environment = last.environment
        // The job's own hook and policy go on with it.
        task.notifyCommand = last.notifyCommand
        task[.notifyPolicy] = last[.notifyPolicy] ?? task[.notifyPolicy]
        var next = flow
        var from = last.taskId
        if flow.controllerId == Rules.sequenceController, var steps = flow.steps {
            // From the first step that did not succeed (the failed one, or one never started).
            let index =
                steps.firstIndex { step in
                    guard let t = step.objectValue?["taskId"]?.stringValue, let done = change.tasks[t] else { return true }
                    return done.status != .succeeded
                } ?? steps.count - 1
            guard var step = steps[index].objectValue, let command = step["command"]?.stringValue else {
                throw SpoolError(.invalidRecord, "Flow \(id) has a step without a command.")
            }
            if let t = step["taskId"]?.stringValue { from = t }
            task = commandTask(
                flowId: id, ownerKey: flow.ownerKey, argv: ["sh", "-c", command], cwd: last.cwd ?? "/", timeoutSeconds: last.timeoutSeconds,
                logLimit: last.logLimit, at: change.now)
            task.environment = last.environment
            step["taskId"] = .string(task.taskId)
            steps[index] = .object(step)
            for later in steps.indices where later > index {
                if var o = steps[later].objectValue {
                    o["taskId"] = nil
                    steps[later] = .object(o)
                }
            }
            next.steps = steps
            next.currentStep = step["name"]?.stringValue
        }
        next.status = .queued
        next.endedAt = nil
        next.blockedTaskId = nil
        next.blockedSummary = nil
        next.cancelRequestedAt = nil
        next.isCancelRequestOnly = false
        next.queue = queue
        change.flow = next
        change.tasks[task.taskId] = task
        change.log(["event": .string("retry"), "taskId": .string(task.taskId), "previousTaskId": .string(from)])
        return task.taskId
    }
}

extension SpoolError {
    /// The refusal to run again a flow whose tasks other programs report.
    public static func noCommand(_ flowId: String) -> SpoolError {
        SpoolError(.notManaged, "Flow \(flowId) has no command task: its tasks are reported by other programs, so clawflow cannot run them again.")
    }
}

/// Command lines as text for people.
public enum CommandText {
    /// `argv` as one shell line, each word quoted as `shellWord` does. Joined by a loop: the
    /// standard library's `joined(separator:)` ran unspecialised here and looked its
    /// collection's types up in the runtime on first use.
    public static func line(_ argv: [String]) -> String {
        var out = ""
        for (i, word) in argv.enumerated() {
            if i > 0 { out += " " }
            out += shellWord(word)
        }
        return out
    }

    /// A word as a shell would need it quoted (for the `task` text, and commands printed for people).
    public static func shellWord(_ word: String) -> String {
        let plain =
            !word.isEmpty
            && word.utf8.allSatisfy { b in
                (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || "-_./=:@%+,".utf8.contains(b)
            }
        return plain ? word : "'" + word.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
    }
}
