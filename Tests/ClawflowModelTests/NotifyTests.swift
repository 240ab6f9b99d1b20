import Testing

@testable import ClawflowModel

private let t0 = Timestamp(milliseconds: 1_795_000_000_000)
private let flowId = "01a22a0a-deff-7066-8a25-0cc6c3d39aea"
private let taskId = "01a22a0a-deff-70f0-b8d3-37c6fb0161b4"

private func task(_ status: TaskStatus, policy: NotifyPolicy = .doneOnly, command: String? = nil) -> TaskRecord {
    var t = TaskRecord(taskId: taskId, flowId: flowId, ownerKey: "owner", runtime: "cron", status: status, at: t0)
    t[.notifyPolicy] = .string(policy.rawValue)
    t.notifyCommand = command
    return t
}

private func flow(_ status: FlowStatus, mode: SyncMode, policy: NotifyPolicy = .doneOnly, endedAt: Timestamp? = nil) -> FlowRecord {
    var f = FlowRecord(flowId: flowId, syncMode: mode, ownerKey: "owner", controllerId: mode == .managed ? "ctl" : nil, status: status, goal: nil, at: t0)
    f[.notifyPolicy] = .string(policy.rawValue)
    f.setTimestamp(.endedAt, endedAt)
    return f
}

@Suite("Which transitions notify")
struct NotifyRuleTests {
    /// (policy, status before or nil for a new record, status after, told?)
    static let table: [(NotifyPolicy, TaskStatus?, TaskStatus, Bool)] = [
        (.doneOnly, nil, .queued, false), (.doneOnly, nil, .succeeded, true), (.doneOnly, .queued, .running, false),
        (.doneOnly, .running, .succeeded, true), (.doneOnly, .running, .failed, true), (.doneOnly, .succeeded, .failed, false),
        (.stateChanges, nil, .queued, true), (.stateChanges, .queued, .running, true), (.stateChanges, .running, .succeeded, true),
        (.stateChanges, .succeeded, .failed, true), (.silent, nil, .succeeded, false), (.silent, .running, .failed, false),
    ]

    @Test("done_only tells once, on the first terminal status; state_changes every change; silent never", arguments: table)
    func taskRule(policy: NotifyPolicy, from: TaskStatus?, to: TaskStatus, told: Bool) {
        let before = from.map { [taskId: task($0, policy: policy)] } ?? [:]
        let after = [taskId: task(to, policy: policy)]
        let notes = Notify.notifications(
            flowBefore: flow(.running, mode: .taskMirrored), flowAfter: flow(.running, mode: .taskMirrored), tasksBefore: before, tasksAfter: after)
        #expect(notes.count == (told ? 1 : 0))
        if let n = notes.first {
            #expect(n.subject == .task && n.taskId == taskId && n.to == to.rawValue && n.from == from?.rawValue)
        }
    }

    @Test("a report that leaves the status alone tells nothing, under any policy", arguments: NotifyPolicy.allCases)
    func sameStatus(policy: NotifyPolicy) {
        var progressed = task(.running, policy: policy)
        progressed.progressSummary = "half way"
        let notes = Notify.notifications(
            flowBefore: flow(.running, mode: .taskMirrored), flowAfter: flow(.running, mode: .taskMirrored),
            tasksBefore: [taskId: task(.running, policy: policy)],
            tasksAfter: [taskId: progressed])
        #expect(notes.isEmpty)
    }

    @Test("a mirrored flow's change is told once, as its task's")
    func mirroredFlowOnce() {
        let notes = Notify.notifications(
            flowBefore: flow(.running, mode: .taskMirrored), flowAfter: flow(.succeeded, mode: .taskMirrored, endedAt: t0),
            tasksBefore: [taskId: task(.running, command: "notify-send done")], tasksAfter: [taskId: task(.succeeded, command: "notify-send done")])
        #expect(notes.count == 1)
        #expect(notes.first?.subject == .task && notes.first?.command == "notify-send done" && notes.first?.isTerminal == true)
    }

    @Test("a managed flow is told of its own changes under its own policy; blocked with endedAt counts as its end")
    func managedFlow() {
        let ended = Notify.notifications(
            flowBefore: flow(.running, mode: .managed), flowAfter: flow(.blocked, mode: .managed, endedAt: t0), tasksBefore: [:], tasksAfter: [:])
        #expect(ended.map(\.subject) == [.flow] && ended.first?.to == "blocked" && ended.first?.taskId == nil)
        let paused = Notify.notifications(
            flowBefore: flow(.running, mode: .managed), flowAfter: flow(.waiting, mode: .managed), tasksBefore: [:], tasksAfter: [:])
        #expect(paused.isEmpty, "done_only: waiting is no end")
        let watched = Notify.notifications(
            flowBefore: flow(.running, mode: .managed, policy: .stateChanges), flowAfter: flow(.waiting, mode: .managed, policy: .stateChanges),
            tasksBefore: [:],
            tasksAfter: [:])
        #expect(watched.count == 1 && watched.first?.from == "running")
    }

    @Test("retries wait twice as long each time, up to the cap, and stop after the last run")
    func backOff() {
        let p = DeliveryPolicy(timeoutSeconds: 30, attempts: 5, firstDelaySeconds: 5, maxDelaySeconds: 15)
        #expect((1...5).map { p.delay(afterAttempt: $0) } == [5, 10, 15, 15, nil])
        #expect(DeliveryPolicy(attempts: 1).delay(afterAttempt: 1) == nil)
        #expect(DeliveryPolicy().timeoutSeconds == 30 && DeliveryPolicy().attempts == 5)
    }
}
