import ClawflowModel
import ClawflowTestSupport
import Glibc
import SystemPackage
import Testing

@testable import ClawflowSpool

/// A running command task whose supervisor is `supervisor` (and whose command is no process).
private func commandFlow(_ spool: Spool, supervisor: ProcessIdentity) throws -> (flowId: String, taskId: String) {
    let now = Spool.now()
    let flow = FlowRecord(flowId: Spool.newId(at: now), syncMode: .taskMirrored, ownerKey: "liveness", controllerId: nil, status: .running, goal: nil, at: now)
    var task = TaskRecord(taskId: Spool.newId(at: now), flowId: flow.flowId, ownerKey: "liveness", runtime: "cli", status: .running, at: now)
    task.command = ["true"]
    task.supervisorPid = Int64(supervisor.pid)
    task.supervisorStartTime = supervisor.startTime
    _ = try spool.create(flow: flow, tasks: [task], source: "test")
    return (flow.flowId, task.taskId)
}

/// A new spool in a temporary directory (kept while `tmp` lives).
private func newSpool() throws -> (tmp: TemporarySpool, spool: Spool) {
    let tmp = TemporarySpool()
    return (tmp, try Spool.open(at: FilePath(tmp.path)))
}

/// The identity of a process that has exited: this process's pid with another start time.
private var goneSupervisor: ProcessIdentity {
    ProcessIdentity(pid: ProcessIdentity.current.pid, startTime: ProcessIdentity.current.startTime + 1)
}

@Suite("Reads settle by default")
struct LivenessTests {
    @Test("a read of one flow records lost for a command whose supervisor is gone")
    func flowReadRecordsLost() throws {
        let (tmp, spool) = try newSpool()
        defer { withExtendedLifetime(tmp) {} }
        let (flowId, taskId) = try commandFlow(spool, supervisor: goneSupervisor)
        #expect(try spool.readFlow(flowId).task(taskId)?.status == .running, "the stored record before any settling read")
        let snap = try spool.flow(flowId)
        #expect(snap.task(taskId)?.status == .lost)
        #expect(snap.task(taskId)?.error == "its supervisor (pid \(getpid())) is gone")
        #expect(snap.flow.status == .lost)
        #expect(try spool.readFlow(flowId).task(taskId)?.status == .lost, "the lost status is written, not only shown")
    }

    @Test("listings, single-task reads and audits record lost too")
    func everyReadSettles() throws {
        let (tmp, spool) = try newSpool()
        defer { withExtendedLifetime(tmp) {} }
        let listed = try commandFlow(spool, supervisor: goneSupervisor)
        let single = try commandFlow(spool, supervisor: goneSupervisor)
        let audited = try commandFlow(spool, supervisor: goneSupervisor)
        let statuses = try spool.flows { (try? $0.get()).flatMap { $0.task(listed.taskId)?.status } }.compactMap { $0 }
        #expect(statuses == [.lost])
        #expect(try spool.task(flowId: single.flowId, taskId: single.taskId).status == .lost)
        _ = try spool.audit()
        #expect(try spool.readTask(flowId: audited.flowId, taskId: audited.taskId).status == .lost)
    }

    @Test("a command whose supervisor runs is left as it is, without a write")
    func liveSupervisorUntouched() throws {
        let (tmp, spool) = try newSpool()
        defer { withExtendedLifetime(tmp) {} }
        let (flowId, taskId) = try commandFlow(spool, supervisor: .current)
        let before = try spool.readFlow(flowId)
        let snap = try spool.flow(flowId)
        #expect(snap.task(taskId)?.status == .running)
        #expect(snap.flow.revision == before.flow.revision)
        #expect(Spool.supervisorRuns(try #require(snap.task(taskId))))
    }

    @Test("one cancel entry point ends a flow's command and a single task's alike")
    func cancelEntryPoint() throws {
        let (tmp, spool) = try newSpool()
        defer { withExtendedLifetime(tmp) {} }
        let whole = try commandFlow(spool, supervisor: .current)
        guard case .cancelled(let snap) = try spool.cancel(flowId: whole.flowId, grace: 0.1, source: "test") else {
            Issue.record("the flow's only task is a command: the cancel ends it")
            return
        }
        #expect(snap.flow.status == .cancelled)
        #expect(snap.task(whole.taskId)?.status == .cancelled)
        let one = try commandFlow(spool, supervisor: .current)
        let outcome = try spool.cancel(flowId: one.flowId, taskId: one.taskId, grace: 0.1, source: "test")
        #expect(outcome.snapshot.task(one.taskId)?.status == .cancelled)
        #expect(outcome.snapshot.task(one.taskId)?.cancelRequestedAt != nil)
        #expect(throws: SpoolError.self) { try spool.cancel(flowId: one.flowId, taskId: one.taskId, grace: 0.1, source: "test") }
    }
}
