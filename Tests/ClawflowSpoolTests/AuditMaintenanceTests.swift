import ClawflowModel
import ClawflowTestSupport
import Foundation
import Glibc
import SystemPackage
import Testing

@testable import ClawflowSpool

/// A spool where flows can be made as of any time in the past.
struct AgedSpool {
    let tmp = TemporarySpool()
    let spool: Spool
    let now = Spool.now()

    init() throws { spool = try Spool.open(at: FilePath(tmp.path)) }

    func ago(_ seconds: Int64) -> Timestamp { Timestamp(milliseconds: now.milliseconds - seconds * 1000) }

    /// Creates a flow as it would have been made `age` seconds ago, with tasks of these statuses.
    @discardableResult
    func flow(
        _ owner: String, managed: Bool = true, status: FlowStatus = .running, tasks: [TaskStatus] = [], age: Int64,
        edit: (inout FlowRecord, [TaskRecord]) -> Void = { _, _ in }
    ) throws -> FlowSnapshot {
        let at = ago(age)
        let id = Spool.newId(at: at)
        var flow = FlowRecord(
            flowId: id, syncMode: managed ? .managed : .taskMirrored, ownerKey: owner, controllerId: managed ? "ctl" : nil, status: status, goal: "g", at: at)
        let records = tasks.map { TaskRecord(taskId: Spool.newId(at: at), flowId: id, ownerKey: owner, runtime: "cron", status: $0, at: at) }
        let terminal: Set<FlowStatus> = [.succeeded, .failed, .cancelled, .lost]
        if terminal.contains(status) || (!managed && records.contains { $0.status.isTerminal }) { flow.setTimestamp(.endedAt, at) }
        edit(&flow, records)
        return try spool.create(flow: flow, tasks: records, source: "test")
    }

    /// Rewrites a manifest as a crash or a hand edit could leave it.
    func overwriteManifest(_ flowId: String, _ change: (inout JSONObject) -> Void) throws {
        var record = try spool.readFlow(flowId).flow
        change(&record.fields)
        try record.fileText().write(toFile: tmp.file("flows/\(flowId)/manifest.json"), atomically: true, encoding: .utf8)
    }

    func codes(_ findings: [AuditFinding]) -> Set<String> { Set(findings.map { "\($0.kind):\($0.code)" }) }
}

@Suite("Audit: every finding")
struct AuditTests {
    @Test("each flow, task and spool finding is reported, errors first and then the oldest")
    func everyFinding() throws {
        let s = try AgedSpool()
        try s.flow("running", status: .running, age: 3600)
        try s.flow("waiting", status: .waiting, age: 3600)
        try s.flow("blocked", status: .blocked, age: 3600)
        let stuck = try s.flow("stuck", status: .running, tasks: [.succeeded], age: 3600)
        try s.overwriteManifest(stuck.flow.flowId) { $0["cancelRequestedAt"] = .string(s.ago(900).description) }
        try s.flow("steps", status: .queued, age: 10) { flow, _ in
            flow.fields["steps"] = .array([.object(["name": "step 1", "command": "true", "taskId": .string(Spool.newId())])])
        }
        try s.flow("blockedon", status: .blocked, age: 10) { flow, _ in flow.setString(.blockedTaskId, Spool.newId()) }
        let ended = try s.flow("ended", status: .succeeded, age: 100)
        try s.overwriteManifest(ended.flow.flowId) { $0["updatedAt"] = .string(s.now.description) }
        try s.flow("queued", managed: false, status: .queued, tasks: [.queued], age: 1200)
        try s.flow("silent", managed: false, status: .running, tasks: [.running], age: 3600)
        try s.flow("lost", managed: false, status: .lost, tasks: [.lost], age: 60)
        let odd = try s.flow("odd", managed: false, status: .succeeded, tasks: [.succeeded], age: 60)
        var task = odd.tasks[0]
        task.setTimestamp(.startedAt, s.now)
        try task.fileText().write(toFile: s.tmp.file("flows/\(odd.flow.flowId)/tasks/\(task.taskId).json"), atomically: true, encoding: .utf8)
        let garbage = try s.flow("garbage", managed: false, status: .running, tasks: [.running], age: 10)
        try "{oops".write(toFile: s.tmp.file("flows/\(garbage.flow.flowId)/tasks/\(garbage.tasks[0].taskId).json"), atomically: true, encoding: .utf8)
        #expect(FileManager.default.createFile(atPath: s.tmp.file("flows/\(ended.flow.flowId)/.manifest.json.999999.x.tmp"), contents: Data()))
        #expect(symlink("../flows/\(ended.flow.flowId)", s.tmp.file("owners/running")) == 0 || true)
        try FileManager.default.removeItem(atPath: s.tmp.file("owners/running"))
        #expect(symlink("../flows/\(ended.flow.flowId)", s.tmp.file("owners/running")) == 0)
        try "not json".write(toFile: s.tmp.file("incoming/new/bad.json"), atomically: true, encoding: .utf8)
        _ = try s.spool.ingest()

        let findings = try s.spool.audit(now: s.now)
        let want: Set<String> = [
            "flow:stale_running", "flow:stale_waiting", "flow:stale_blocked", "flow:cancel_stuck", "flow:missing_linked_tasks",
            "flow:blocked_task_missing", "flow:inconsistent_timestamps", "task:stale_queued", "task:stale_running", "task:lost",
            "task:inconsistent_timestamps", "spool:unparseable_record", "spool:stray_temp_file", "spool:bad_owner_link", "spool:rejected_drops",
        ]
        #expect(s.codes(findings) == want, "missing \(want.subtracting(s.codes(findings))), extra \(s.codes(findings).subtracting(want))")
        let severities = findings.map(\.severity)
        #expect(severities == severities.sorted(), "errors come first")
        let errorAges = findings.filter { $0.severity == .error }.map(\.ageSeconds)
        #expect(errorAges == errorAges.sorted(by: >), "then the oldest first")
        #expect(findings.first { $0.code == "cancel_stuck" }?.ageSeconds ?? 0 >= 899)
    }

    @Test("temp files of gone writers are found in owners/, index/ and the spool root, and no other name there is")
    func strayTempFilesOutsideFlows() throws {
        let s = try AgedSpool()
        try s.flow("a", status: .running, age: 10)
        let stray = ["owners/.a.999999.ab.tmp", "index/tasks/.x.999999.cd.tmp", "index/runs/.y.999999.ef.tmp", ".VERSION.999999.01.tmp"]
        for name in stray + ["index/tasks/not-a-temp.999999.ab.tmp"] {
            #expect(FileManager.default.createFile(atPath: s.tmp.file(name), contents: Data()), "\(name)")
        }
        let found = try s.spool.audit(now: s.now).filter { $0.code == "stray_temp_file" }.map(\.path)
        #expect(Set(found) == Set(stray.map { s.tmp.file($0) }), "\(found)")
        #expect(found.count == stray.count, "each once: \(found)")
    }

    @Test("thresholds decide what is stale; a fresh spool has no findings")
    func thresholds() throws {
        let s = try AgedSpool()
        try s.flow("r", status: .running, age: 600)
        #expect(try s.spool.audit(now: s.now).isEmpty)
        var t = AuditThresholds()
        t.flowRunning = 300
        #expect(s.codes(try s.spool.audit(now: s.now, thresholds: t)) == ["flow:stale_running"])
    }
}

@Suite("Maintenance: preview, apply, and races", .serialized)
struct MaintenanceTests {
    func actions(_ items: [MaintenanceItem]) -> [String] { items.map(\.action).sorted() }

    @Test("the preview changes nothing; --apply makes every repair, logs it, and leaves a spool fsck accepts")
    func previewThenApply() throws {
        let s = try AgedSpool()
        var policy = MaintenancePolicy()
        policy.lostAfter = 1800
        let cancel = try s.flow("cancel", status: .running, tasks: [.succeeded], age: 600)
        try s.overwriteManifest(cancel.flow.flowId) { $0["cancelRequestedAt"] = .string(s.ago(400).description) }
        let orphanFailed = try s.flow("orphan-f", status: .running, tasks: [.succeeded, .failed], age: 3600)
        let orphanLost = try s.flow("orphan-l", status: .running, tasks: [.lost], age: 3600)
        let fresh = try s.flow("fresh", status: .running, tasks: [.succeeded], age: 60)
        let silent = try s.flow("silent", managed: false, status: .running, tasks: [.running], age: 7200)
        let blocked = try s.flow("blockedon", status: .blocked, age: 10) { flow, _ in flow.setString(.blockedTaskId, Spool.newId()) }
        let skewed = try s.flow("skewed", status: .succeeded, age: 100)
        try s.overwriteManifest(skewed.flow.flowId) { $0["updatedAt"] = .string(s.now.description) }
        let old = try s.flow("keeper", managed: false, status: .succeeded, tasks: [.succeeded], age: 8 * 86_400)
        let newer = try s.flow("keeper", managed: false, status: .succeeded, tasks: [.succeeded], age: 86_400)
        let temp = s.tmp.file("flows/\(fresh.flow.flowId)/.manifest.json.999999.x.tmp")
        #expect(FileManager.default.createFile(atPath: temp, contents: Data(), attributes: [.modificationDate: Date(timeIntervalSinceNow: -40 * 3600)]))
        try "not json".write(toFile: s.tmp.file("incoming/new/bad.json"), atomically: true, encoding: .utf8)
        _ = try s.spool.ingest()
        // Refused 31 days ago by its reason's own record; a young refused drop dated 1970 stays.
        let reasonPath = s.tmp.file("rejected/bad.json.reason")
        let reason = try String(contentsOfFile: reasonPath, encoding: .utf8)
        let monthAgo = Timestamp(milliseconds: s.now.milliseconds - 31 * 86_400_000).description
        try reason.replacing(#/"at": "[^"]*"/#, with: "\"at\": \"\(monthAgo)\"").write(toFile: reasonPath, atomically: true, encoding: .utf8)
        try "also not json".write(toFile: s.tmp.file("incoming/new/dated.json"), atomically: true, encoding: .utf8)
        _ = try s.spool.ingest()
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: 0)], ofItemAtPath: s.tmp.file("rejected/dated.json"))

        let before = try FileManager.default.subpathsOfDirectory(atPath: s.tmp.path).sorted()
        let plan = s.spool.planMaintenance(try s.spool.scan(), policy: policy)
        #expect(
            actions(plan) == [
                "cap_rejected", "end_orphaned", "end_orphaned", "fail_blocked_missing", "finalise_cancel", "fix_timestamps", "mark_lost", "prune", "sweep_temp",
            ])
        let after = try FileManager.default.subpathsOfDirectory(atPath: s.tmp.path).sorted()
        #expect(after == before, "the preview wrote nothing")

        let done = s.spool.applyMaintenance(plan, policy: policy)
        #expect(done.allSatisfy { $0.done }, "\(done.filter { !$0.done }.map(\.action))")
        func status(_ snap: FlowSnapshot) throws -> FlowStatus { try s.spool.readFlow(snap.flow.flowId).flow.status }
        #expect(try status(cancel) == .cancelled)
        #expect(try status(orphanFailed) == .failed)
        #expect(try status(orphanLost) == .lost)
        #expect(try status(fresh) == .running, "a fresh flow whose tasks are done is left alone")
        #expect(try s.spool.readFlow(silent.flow.flowId).tasks[0].status == .lost)
        #expect(try status(blocked) == .failed)
        let fixed = try s.spool.readFlow(skewed.flow.flowId).flow
        #expect(fixed.endedAt == fixed.timestamp(.updatedAt))
        #expect(!s.spool.flowExists(old.flow.flowId) && s.spool.flowExists(newer.flow.flowId))
        #expect(s.spool.flowId(forOwner: "keeper") == newer.flow.flowId)
        #expect(!FileManager.default.fileExists(atPath: temp))
        #expect(
            !FileManager.default.fileExists(atPath: s.tmp.file("rejected/bad.json"))
                && !FileManager.default.fileExists(atPath: s.tmp.file("rejected/bad.json.reason")))
        #expect(FileManager.default.fileExists(atPath: s.tmp.file("rejected/dated.json")), "refused just now, whatever its own date")
        let log = try String(contentsOfFile: s.tmp.file("flows/\(orphanFailed.flow.flowId)/events.jsonl"), encoding: .utf8)
        #expect(log.contains(#""event":"repair""#) && log.contains(#""action":"end_orphaned""#) && log.contains(#""source":"maintenance""#))
        let swept = try String(contentsOfFile: s.tmp.file("flows/\(fresh.flow.flowId)/events.jsonl"), encoding: .utf8)
        #expect(
            swept.contains(#""action":"sweep_temp""#) && swept.contains(".manifest.json.999999.x.tmp"),
            "the sweep in a flow's directory is in its history: \(swept)")
        let report = try s.spool.fsck(repair: false)
        #expect(report.findings.isEmpty, "\(report.findings)")
        #expect(s.spool.planMaintenance(try s.spool.scan(), policy: policy).isEmpty, "nothing left to do")
    }

    @Test("a flow past retention is pruned, not first given a new endedAt (which would restart its retention)")
    func pruneBeforeFix() throws {
        let s = try AgedSpool()
        let old = try s.flow("skewed-old", status: .succeeded, age: 8 * 86_400)
        try s.overwriteManifest(old.flow.flowId) { $0["updatedAt"] = .string(s.ago(86_400).description) }
        #expect(actions(s.spool.planMaintenance(try s.spool.scan(), policy: MaintenancePolicy())) == ["prune"])
    }

    @Test("a record that changed since the scan is left alone")
    func changedSinceScan() throws {
        let s = try AgedSpool()
        let orphan = try s.flow("race", status: .running, tasks: [.failed], age: 3600)
        let ended = try s.flow("race-old", managed: false, status: .succeeded, tasks: [.succeeded], age: 8 * 86_400)
        let plan = s.spool.planMaintenance(try s.spool.scan(), policy: MaintenancePolicy())
        #expect(actions(plan) == ["end_orphaned", "prune"])
        // Meanwhile its controller links a new running task: the flow is no longer orphaned.
        _ = try s.spool.addTask(toFlow: orphan.flow.flowId, ownerKey: nil, task: NewTask(runtime: "cron", status: .running), source: "test")
        let done = s.spool.applyMaintenance(plan, policy: MaintenancePolicy())
        #expect(done.first { $0.action == "end_orphaned" }?.done == false)
        #expect(try s.spool.readFlow(orphan.flow.flowId).flow.status == .running)
        #expect(done.first { $0.action == "prune" }?.done == true)
        #expect(!s.spool.flowExists(ended.flow.flowId))
    }

    @Test("a 50,000-flow spool with 40,000 old terminal flows: maintenance prunes exactly those and keeps the rest")
    func fiftyThousand() throws {
        let s = try AgedSpool()
        var old = Set<String>()
        var kept = Set<String>()
        var drafts: [FlowDraft] = []
        for i in 0..<50_000 {
            let age: Int64 = i % 5 == 0 ? 86_400 : 8 * 86_400 + Int64(i)
            let at = s.ago(age)
            let id = Spool.newId(at: at)
            let live = i % 10 == 0
            let task = TaskRecord(taskId: Spool.newId(at: at), flowId: id, ownerKey: "o\(i)", runtime: "cron", status: live ? .running : .succeeded, at: at)
            drafts.append(
                FlowDraft(
                    flow: FlowRecord(flowId: id, syncMode: .taskMirrored, ownerKey: "o\(i)", controllerId: nil, status: .queued, goal: nil, at: at),
                    tasks: [task], source: "test"))
            if i % 5 == 0 { kept.insert(id) } else { old.insert(id) }
        }
        for chunk in stride(from: 0, to: drafts.count, by: 500) {
            let tx = Transaction(s.spool, grouped: true)
            _ = try s.spool.create(Array(drafts[chunk..<min(chunk + 500, drafts.count)]), in: tx)
            try tx.end()
        }
        #expect(old.count == 40_000 && kept.count == 10_000)
        let plan = s.spool.planMaintenance(try s.spool.scan(), policy: MaintenancePolicy())
        #expect(plan.count == 40_000 && plan.allSatisfy { $0.action == "prune" })
        #expect(Set(plan.map(\.id)) == old)
        let done = s.spool.applyMaintenance(plan, policy: MaintenancePolicy())
        #expect(done.filter(\.done).count == 40_000)
        #expect(Set(try s.spool.flowIds()) == kept)
        let links = try FileManager.default.contentsOfDirectory(atPath: s.tmp.file("owners")).count
        let indexed = try FileManager.default.contentsOfDirectory(atPath: s.tmp.file("index/tasks")).count
        #expect(links == 10_000 && indexed == 10_000)
    }
}

@Suite("The run index")
struct RunIndexTests {
    func runTask(_ spool: Spool, owner: String, runId: String) throws -> (flowId: String, taskId: String) {
        let (snap, taskId) = try spool.addTaskInNewFlow(
            ownerKey: owner, task: NewTask(runtime: "subagent", status: .running, fields: ["runId": .string(runId)]), goal: nil, source: "test")
        return (snap.flow.flowId, taskId)
    }

    /// A spool as one made before the run index looks (no index/runs), holding one task with
    /// run id `runId`, opened afresh.
    func spoolBeforeRunIndex(owner: String, runId: String) throws -> (TemporarySpool, Spool, (flowId: String, taskId: String)) {
        let tmp = TemporarySpool()
        let task = try runTask(try Spool.open(at: FilePath(tmp.path)), owner: owner, runId: runId)
        try FileManager.default.removeItem(atPath: tmp.file("index/runs"))
        // Opened for reading, as a process that opened it before the index was there: a
        // writer's open would build the index at once (spool-layout.md, "Derived state").
        return (tmp, try #require(try Spool.openExisting(at: FilePath(tmp.path))), task)
    }

    @Test("a task with a run id is listed under it, and a run-id lookup reads that list, not every flow")
    func lookupReadsIndex() throws {
        let tmp = TemporarySpool()
        let spool = try Spool.open(at: FilePath(tmp.path))
        let a = try runTask(spool, owner: "ra", runId: "team/run 7")
        _ = try runTask(spool, owner: "rb", runId: "other")
        // The empty run id is not indexed; its tasks are still found, by a scan.
        let empty = try runTask(spool, owner: "rc", runId: "")
        #expect(try spool.tasks(withRunId: "").map(\.taskId) == [empty.taskId])
        let entry = tmp.file("index/runs/team%2Frun%207/\(a.taskId)")
        #expect(link(entry) == "../../../flows/\(a.flowId)")
        #expect(try spool.resolveTask("team/run 7") == (a.flowId, a.taskId))
        // Without its entry the task is not found by its run id: the lookup used the index.
        try FileManager.default.removeItem(atPath: entry)
        #expect(try spool.tasks(withRunId: "team/run 7").isEmpty)
        let report = try spool.fsck(repair: false)
        #expect(report.findings.map(\.code) == ["missing_index"], "\(report.findings)")
        #expect(report.findings.first?.path == entry)
        let repaired = try spool.fsck(repair: true)
        #expect(repaired.repairs.contains("indexed task \(a.taskId) under its run id"), "\(repaired.repairs)")
        #expect(try spool.resolveTask("team/run 7") == (a.flowId, a.taskId))
        let after = try spool.fsck(repair: false)
        #expect(after.findings.isEmpty && after.notes.isEmpty, "\(after.findings) \(after.notes)")
    }

    @Test("a spool made before the run index finds run ids by reading every flow until fsck --repair builds the index")
    func olderSpool() throws {
        let (tmp, spool, a) = try spoolBeforeRunIndex(owner: "old", runId: "r-1")
        #expect(try spool.resolveTask("r-1") == (a.flowId, a.taskId))
        // A task made now is not indexed either: there is no index to add it to.
        let b = try runTask(spool, owner: "old-2", runId: "r-1")
        #expect(!FileManager.default.fileExists(atPath: tmp.file("index/runs")))
        #expect(try spool.tasks(withRunId: "r-1").map(\.taskId).sorted() == [a.taskId, b.taskId].sorted())
        let before = try spool.fsck(repair: false)
        #expect(before.findings.isEmpty, "\(before.findings)")
        #expect(before.notes.map(\.code) == ["missing_derived"], "\(before.notes)")
        let repaired = try spool.fsck(repair: true)
        #expect(repaired.repairs.contains("built the run index (2 task(s) with a run id)"), "\(repaired.repairs)")
        #expect(FileManager.default.fileExists(atPath: tmp.file("index/runs/.complete")))
        #expect(link(tmp.file("index/runs/r-1/\(b.taskId)")) == "../../../flows/\(b.flowId)")
        // This process opened the spool before the index existed; it adds to it all the same.
        let c = try runTask(spool, owner: "old-3", runId: "r-1")
        #expect(link(tmp.file("index/runs/r-1/\(c.taskId)")) == "../../../flows/\(c.flowId)")
        let after = try spool.fsck(repair: false)
        #expect(after.findings.isEmpty && after.notes.isEmpty, "\(after.findings) \(after.notes)")
    }

    @Test("maintenance builds the run index of a spool made before it, once")
    func maintenanceBuilds() throws {
        let (tmp, spool, a) = try spoolBeforeRunIndex(owner: "m-old", runId: "m-1")
        let plan = spool.planMaintenance(try spool.scan(), policy: MaintenancePolicy())
        #expect(plan.map(\.action) == ["build_run_index"])
        #expect(spool.applyMaintenance(plan, policy: MaintenancePolicy()).map(\.done) == [true])
        #expect(link(tmp.file("index/runs/m-1/\(a.taskId)")) == "../../../flows/\(a.flowId)")
        #expect(FileManager.default.fileExists(atPath: tmp.file("index/runs/.complete")))
        #expect(spool.planMaintenance(try spool.scan(), policy: MaintenancePolicy()).isEmpty)
        let report = try spool.fsck(repair: false)
        #expect(report.findings.isEmpty && report.notes.isEmpty, "\(report.findings) \(report.notes)")
    }

    @Test("pruning a flow removes its tasks from the run index")
    func pruneUnindexes() throws {
        let s = try AgedSpool()
        let at = s.ago(8 * 86_400)
        let flowId = Spool.newId(at: at)
        var flow = FlowRecord(flowId: flowId, syncMode: .taskMirrored, ownerKey: "pruned-run", controllerId: nil, status: .succeeded, goal: "g", at: at)
        flow.setTimestamp(.endedAt, at)
        var task = TaskRecord(taskId: Spool.newId(at: at), flowId: flowId, ownerKey: "pruned-run", runtime: "cron", status: .succeeded, at: at)
        task.fields["runId"] = .string("gone-run")
        let old = try s.spool.create(flow: flow, tasks: [task], source: "test")
        #expect(link(s.tmp.file("index/runs/gone-run/\(task.taskId)")) == "../../../flows/\(flowId)")
        let keep = try runTask(s.spool, owner: "kept-run", runId: "kept")
        let plan = s.spool.planMaintenance(try s.spool.scan(), policy: MaintenancePolicy())
        _ = s.spool.applyMaintenance(plan, policy: MaintenancePolicy())
        #expect(!s.spool.flowExists(old.flow.flowId))
        #expect(!FileManager.default.fileExists(atPath: s.tmp.file("index/runs/gone-run")))
        #expect(link(s.tmp.file("index/runs/kept/\(keep.taskId)")) == "../../../flows/\(keep.flowId)")
        let report = try s.spool.fsck(repair: false)
        #expect(report.findings.isEmpty && report.notes.isEmpty, "\(report.findings) \(report.notes)")
    }
}
