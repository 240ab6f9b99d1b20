import Testing

@testable import ClawflowModel

private let t0 = Timestamp(milliseconds: 1_795_000_000_000)
private let flowId = "01a22a0a-deff-7066-8a25-0cc6c3d39aea"
private let taskId = "01a22a0a-deff-70f0-b8d3-37c6fb0161b4"

private func task(_ status: TaskStatus, at: Timestamp = t0, id: String = taskId) -> TaskRecord {
    TaskRecord(taskId: id, flowId: flowId, ownerKey: "owner", runtime: "cron", status: status, at: at)
}

private func flow(_ status: FlowStatus, mode: SyncMode = .taskMirrored, endedAt: Timestamp? = nil) -> FlowRecord {
    var f = FlowRecord(flowId: flowId, syncMode: mode, ownerKey: "owner", controllerId: mode == .managed ? "ctl" : nil, status: status, goal: nil, at: t0)
    f.setTimestamp(.endedAt, endedAt)
    return f
}

@Suite("Task precedence")
struct PrecedenceTests {
    static let table: [(TaskStatus, TaskStatus, Bool)] = TaskStatus.allCases.flatMap { from in
        TaskStatus.allCases.map { to in
            let allowed = from.isActive || (from == .succeeded && [.failed, .timedOut, .cancelled].contains(to))
            return (from, to, allowed)
        }
    }

    @Test("active tasks move anywhere; only succeeded may later fail, time out or be cancelled", arguments: table)
    func transitions(from: TaskStatus, to: TaskStatus, allowed: Bool) {
        var t = task(from)
        let outcome = Rules.apply(TaskUpdate(status: to), to: &t, at: t0.adding(seconds: 5))
        if allowed {
            #expect(outcome == .applied)
            #expect(t.status == to)
        } else {
            #expect(outcome != .applied)
            #expect(t.status == from)
        }
    }

    @Test("a report on a final task is ignored and leaves the record untouched")
    func ignoredReportLeavesRecord() {
        var t = task(.failed)
        let before = t
        let outcome = Rules.apply(TaskUpdate(status: .succeeded, fields: ["terminalSummary": "late"]), to: &t, at: t0.adding(seconds: 9))
        #expect(outcome == .ignored(reason: "task is already failed; succeeded was not applied"))
        #expect(t == before)
    }

    @Test("running sets startedAt once; a terminal status sets endedAt; every report sets lastEventAt")
    func timestamps() {
        var t = task(.queued)
        _ = Rules.apply(TaskUpdate(status: .running), to: &t, at: t0.adding(seconds: 1))
        _ = Rules.apply(TaskUpdate(status: .running, fields: ["progressSummary": "half"]), to: &t, at: t0.adding(seconds: 2))
        #expect(t.timestamp(.startedAt) == t0.adding(seconds: 1))
        #expect(t.timestamp(.lastEventAt) == t0.adding(seconds: 2))
        #expect(t.timestamp(.endedAt) == nil)
        _ = Rules.apply(TaskUpdate(status: .succeeded), to: &t, at: t0.adding(seconds: 3))
        #expect(t.timestamp(.endedAt) == t0.adding(seconds: 3))
    }
}

@Suite("Mirrored derivation and the terminal predicate")
struct DerivationTests {
    @Test(
        "a mirrored flow follows its task",
        arguments: [
            (TaskStatus.queued, FlowStatus.queued), (.running, .running), (.succeeded, .succeeded),
            (.failed, .failed), (.timedOut, .failed), (.cancelled, .cancelled), (.lost, .lost),
        ])
    func mirrored(taskStatus: TaskStatus, flowStatus: FlowStatus) {
        let f = Rules.reconcile(flow(.queued), tasks: [task(taskStatus)], at: t0.adding(seconds: 1))
        #expect(f.status == flowStatus)
        #expect((f.endedAt != nil) == taskStatus.isTerminal)
        #expect(f.isTerminal == taskStatus.isTerminal)
    }

    @Test("a succeeded task with a blocked outcome ends its mirrored flow blocked, with endedAt, so it is terminal")
    func blockedOutcome() {
        var t = task(.succeeded)
        t.fields["terminalOutcome"] = "blocked"
        t.fields["terminalSummary"] = "needs a login"
        let f = Rules.reconcile(flow(.running), tasks: [t], at: t0)
        #expect(f.status == .blocked)
        #expect(f.string(.blockedTaskId) == taskId)
        #expect(f.string(.blockedSummary) == "needs a login")
        #expect(f.endedAt != nil)
        #expect(f.isTerminal)
    }

    @Test("blocked is terminal only with endedAt", arguments: [(nil as Timestamp?, false), (t0, true)])
    func blockedPredicate(endedAt: Timestamp?, terminal: Bool) {
        #expect(flow(.blocked, mode: .managed, endedAt: endedAt).isTerminal == terminal)
    }

    @Test("the terminal predicate", arguments: FlowStatus.allCases)
    func terminalPredicate(status: FlowStatus) {
        let expected = [.succeeded, .failed, .cancelled, .lost].contains(status)
        #expect(flow(status, mode: .managed).isTerminal == expected)
    }

    @Test("a managed flow's status is its controller's, whatever its tasks")
    func managedIgnoresTasks() {
        let f = flow(.running, mode: .managed)
        #expect(Rules.reconcile(f, tasks: [task(.failed)], at: t0) == f)
    }

    @Test("a cancel-requested flow with no active task becomes cancelled, whatever the last task did")
    func cancelFinalisation() {
        var f = flow(.running, mode: .managed)
        f.setTimestamp(.cancelRequestedAt, t0)
        #expect(Rules.reconcile(f, tasks: [task(.queued)], at: t0).status == .running)
        let done = Rules.reconcile(f, tasks: [task(.succeeded)], at: t0.adding(seconds: 4))
        #expect(done.status == .cancelled)
        #expect(done.endedAt == t0.adding(seconds: 4))
        #expect(Rules.reconcile(f, tasks: [], at: t0).status == .cancelled)
    }

    @Test("a controller's own cancel request is left to the controller: no task settling ends the flow")
    func requestOnlyIsNotFinalised() {
        var f = flow(.running, mode: .managed)
        f.setTimestamp(.cancelRequestedAt, t0)
        f.isCancelRequestOnly = true
        #expect(Rules.reconcile(f, tasks: [], at: t0) == f)
        #expect(Rules.reconcile(f, tasks: [task(.succeeded)], at: t0.adding(seconds: 4)) == f)
        #expect(f.fields["cancelRequestOnly"] == .bool(true), "kept in the record as a plain boolean")
        #expect((try? FlowRecord(validating: f.fields)) != nil)
    }

    @Test("maintenance finalises a controller's cancel request only once it is cancel_stuck, and then for good")
    func requestOnlyMaintenance() {
        var f = flow(.running, mode: .managed)
        f.setTimestamp(.cancelRequestedAt, t0)
        f.isCancelRequestOnly = true
        let policy = MaintenancePolicy()
        #expect(MaintenanceRules.plan(flow: f, tasks: [], now: t0.adding(seconds: 60), policy: policy).isEmpty)
        let later = t0.adding(seconds: policy.thresholds.cancelStuck)
        let plan = MaintenanceRules.plan(flow: f, tasks: [], now: later, policy: policy)
        #expect(plan.map(\.action) == [.finaliseCancel])
        var tasks: [String: TaskRecord] = [:]
        MaintenanceRules.apply(.finaliseCancel, flow: &f, tasks: &tasks, now: later, policy: policy)
        #expect(Rules.reconcile(f, tasks: [], at: later).status == .cancelled)
    }

    @Test("a cancelled sequence names no current step any more; another controller's field is its own")
    func cancelledSequenceHasNoCurrentStep() {
        var f = flow(.running, mode: .managed)
        f.setTimestamp(.cancelRequestedAt, t0)
        f.setString(.currentStep, "step 2")
        var sequence = f
        sequence.setString(.controllerId, Rules.sequenceController)
        let done = Rules.reconcile(sequence, tasks: [task(.cancelled)], at: t0)
        #expect(done.status == .cancelled)
        #expect(done.fields["currentStep"] == nil)
        var other = f
        other.setString(.controllerId, "acme/deployer")
        #expect(Rules.reconcile(other, tasks: [task(.cancelled)], at: t0).string(.currentStep) == "step 2")
    }

    @Test("the revision moves by exactly one per changed write and not at all otherwise")
    func revision() {
        let stored = flow(.queued)
        #expect(Rules.commit(stored, over: stored, at: t0.adding(seconds: 1)) == stored)
        var next = stored
        next.status = .running
        let written = Rules.commit(next, over: stored, at: t0.adding(seconds: 1))
        #expect(written.revision == stored.revision + 1)
        #expect(written.timestamp(.updatedAt) == t0.adding(seconds: 1))
    }
}

@Suite("Lookup and link rules")
struct LookupRuleTests {
    @Test("an owner resolves to its newest live flow, even over a newer finished one")
    func newestLiveWins() {
        let pick = Rules.ownerPick([
            ("a", t0, false), ("b", t0.adding(seconds: 10), false), ("c", t0.adding(seconds: 20), true),
        ])
        #expect(pick == "b")
    }

    @Test("with every flow finished, the newest one wins; ties go to the larger id")
    func newestFinished() {
        #expect(Rules.ownerPick([("a", t0, true), ("c", t0.adding(seconds: 5), true), ("b", t0, true)]) == "c")
        #expect(Rules.ownerPick([("a", t0, true), ("b", t0, true)]) == "b")
        #expect(Rules.ownerPick([]) == nil)
    }

    @Test("a run id resolves to its newest active task, else its newest")
    func runIdPick() {
        let old = task(.running, at: t0, id: "00000000-0000-7000-8000-000000000001")
        let new = task(.succeeded, at: t0.adding(seconds: 5), id: "00000000-0000-7000-8000-000000000002")
        #expect(Rules.runIdPick([old, new])?.taskId == old.taskId)
        #expect(Rules.runIdPick([task(.failed, at: t0, id: old.taskId), new])?.taskId == new.taskId)
    }

    @Test("links are refused to terminal, cancel-requested and full mirrored flows, and across owners")
    func linkRefusals() {
        #expect(Rules.linkRefusal(flow: flow(.running, mode: .managed), taskCount: 3, ownerKey: "owner") == nil)
        #expect(Rules.linkRefusal(flow: flow(.running, mode: .managed), taskCount: 0, ownerKey: nil) == nil)
        #expect(Rules.linkRefusal(flow: flow(.succeeded, mode: .managed), taskCount: 0, ownerKey: nil)?.contains("already succeeded") == true)
        var cancelled = flow(.running, mode: .managed)
        cancelled.setTimestamp(.cancelRequestedAt, t0)
        #expect(Rules.linkRefusal(flow: cancelled, taskCount: 0, ownerKey: nil)?.contains("cancel request") == true)
        #expect(Rules.linkRefusal(flow: flow(.running), taskCount: 1, ownerKey: nil)?.contains("mirrored") == true)
        #expect(Rules.linkRefusal(flow: flow(.running, mode: .managed), taskCount: 0, ownerKey: "other")?.contains("differs") == true)
    }
}

@Suite("Records")
struct RecordTests {
    @Test("unknown keys and explicit nulls survive a read and rewrite")
    func unknownKeysPreserved() throws {
        var f = flow(.running, mode: .managed)
        f.fields["futureField"] = .object(["x": .int(1)])
        let text = f.fileText()
        let parsed = try FlowRecord(validating: JSON.parse(text).objectValue!)
        #expect(parsed.fields["futureField"] == .object(["x": .int(1)]))
        #expect(parsed.fields["stateJson"] == .null)
        #expect(parsed.fileText() == text)
        #expect(text.hasSuffix("}\n"))
    }

    @Test(
        "records with wrong field types are refused, naming the field",
        arguments: [
            (#"{"schema": 1, "flowId": "x"}"#, "flowId"),
            (#"{"schema": 2}"#, "schema"),
            (
                #"{"schema": 1, "flowId": "01a22a0a-deff-7066-8a25-0cc6c3d39aea", "syncMode": "managed", "ownerKey": "o", "revision": 0, "status": "running", "createdAt": "2026-11-30T01:21:25.247Z", "updatedAt": "2026-11-30T01:21:25.247Z", "stateJson": null, "waitJson": null}"#,
                "controllerId"
            ),
            (
                #"{"schema": 1, "flowId": "01a22a0a-deff-7066-8a25-0cc6c3d39aea", "syncMode": "task_mirrored", "ownerKey": "o", "revision": "1", "status": "running", "createdAt": "2026-11-30T01:21:25.247Z", "updatedAt": "2026-11-30T01:21:25.247Z", "stateJson": null, "waitJson": null}"#,
                "revision"
            ),
            (
                #"{"schema": 1, "flowId": "01a22a0a-deff-7066-8a25-0cc6c3d39aea", "syncMode": "task_mirrored", "ownerKey": "o", "revision": 1, "status": "paused", "createdAt": "2026-11-30T01:21:25.247Z", "updatedAt": "2026-11-30T01:21:25.247Z", "stateJson": null, "waitJson": null}"#,
                "status"
            ),
        ])
    func invalidFlows(text: String, field: String) throws {
        let object = try JSON.parse(text).objectValue!
        #expect { try FlowRecord(validating: object) } throws: { error in (error as? RecordError)?.field == field }
    }

    @Test("task runtimes must match [a-z0-9_-]{1,32}")
    func runtimes() {
        #expect(RuntimeName.isValid("subagent"))
        #expect(RuntimeName.isValid("my_runner-2"))
        #expect(!RuntimeName.isValid("Cron"))
        #expect(!RuntimeName.isValid(""))
        #expect(!RuntimeName.isValid(String(repeating: "a", count: 33)))
    }

    @Test("events describe creation, links, task and flow status changes and cancels")
    func events() {
        let before = flow(.queued)
        var after = before
        after.status = .running
        let events = Rules.events(flowBefore: before, flowAfter: after, tasksBefore: [taskId: task(.queued)], tasksAfter: [taskId: task(.running)])
        #expect(events.map { $0["event"] } == ["status", "status"])
        #expect(events[0]["taskId"] == .string(taskId))
        #expect(events[1]["taskId"] == nil)
        let created = Rules.events(flowBefore: nil, flowAfter: before, tasksBefore: [:], tasksAfter: [taskId: task(.queued)])
        #expect(created.map { $0["event"] } == ["created", "linked"])
    }
}

@Suite("Maintenance rules")
struct MaintenanceRuleTests {
    @Test("--lost-after: each silent task is lost with its own silence, in the plan's reason and in its error")
    func silentTasksKeepTheirOwnSilence() {
        let f = flow(.running)
        let long = "01a22a0a-deff-70f0-b8d3-37c6fb0161b5"
        let short = "01a22a0a-deff-70f0-b8d3-37c6fb0161b6"
        var a = task(.running, id: long)
        var b = task(.running, id: short)
        a.setTimestamp(.lastEventAt, t0)
        b.setTimestamp(.lastEventAt, t0.adding(seconds: 4200))
        let now = t0.adding(seconds: 7200)
        var policy = MaintenancePolicy()
        policy.lostAfter = 1800
        let plan = MaintenanceRules.plan(flow: f, tasks: [a, b], now: now, policy: policy)
        #expect(plan.map(\.action) == [.markSilentLost([long, short])])
        #expect(plan.first?.reason == "task \(long) silent for 2h 0m, task \(short) silent for 50m 0s (--lost-after 30m 0s)")
        var flowRecord = f
        var tasks = [long: a, short: b]
        MaintenanceRules.apply(.markSilentLost([long, short]), flow: &flowRecord, tasks: &tasks, now: now, policy: policy)
        #expect(tasks[long]?.status == .lost && tasks[short]?.status == .lost)
        #expect(tasks[long]?.string(.error) == "no report for 2h 0m (maintenance --lost-after 30m 0s)")
        #expect(tasks[short]?.string(.error) == "no report for 50m 0s (maintenance --lost-after 30m 0s)")
    }
}
