import ClawflowModel
import ClawflowTestSupport
import Foundation
import Glibc
import SystemPackage
import Testing

@testable import ClawflowSpool

/// A spool with helpers to drop files the way another program would.
struct DropFixture {
    let tmp = TemporarySpool()
    let spool: Spool

    init() throws { spool = try Spool.open(at: FilePath(tmp.path)) }

    /// Writes `text` to incoming/tmp/<name>, then renames it into incoming/new/ (the protocol).
    func drop(_ name: String, _ text: String, age seconds: Int = 0) throws {
        let tmpPath = tmp.file("incoming/tmp/" + name)
        try text.write(toFile: tmpPath, atomically: false, encoding: .utf8)
        if seconds > 0 {
            let date = Date(timeIntervalSinceNow: -Double(seconds))
            try FileManager.default.setAttributes([.modificationDate: date], ofItemAtPath: tmpPath)
        }
        #expect(rename(tmpPath, tmp.file("incoming/new/" + name)) == 0)
    }

    func reason(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: tmp.file("rejected/\(name).reason")))
        return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }

    func tasks() throws -> [TaskRecord] { try spool.allTasks() }
}

@Suite("The drop box")
struct IngestTests {
    @Test("a task drop without a parent becomes a one-task flow; an update by run id finishes it")
    func taskThenUpdate() throws {
        let f = try DropFixture()
        try f.drop("job-1.json", #"{"kind":"task","ownerKey":"s1","runtime":"cron","label":"backup","runId":"r1","status":"running"}"#)
        var r = try f.spool.ingest()
        #expect(r.applied == 1 && r.rejected == 0)
        let flowId = try #require(f.spool.flowId(forOwner: "s1"))
        #expect(try f.spool.readFlow(flowId).flow.status == .running)
        try f.drop("job-1-done.json", #"{"kind":"task-update","runId":"r1","status":"succeeded","terminalSummary":"3 GiB"}"#)
        r = try f.spool.ingest()
        #expect(r.applied == 1)
        let snap = try f.spool.readFlow(flowId)
        #expect(snap.flow.status == .succeeded)
        #expect(snap.tasks[0].string(.terminalSummary) == "3 GiB")
        #expect(names(f.tmp.file("incoming/new")).isEmpty)
        #expect(names(f.tmp.file("incoming/claimed")).isEmpty)
        let log = try String(contentsOfFile: f.tmp.file("flows/\(flowId)/events.jsonl"), encoding: .utf8)
        #expect(log.contains(#""source":"drop:job-1-done.json""#))
    }

    @Test("a task drop with parentFlowId and a chosen taskId joins that flow; updates find it by taskId")
    func linkedWithChosenId() throws {
        let f = try DropFixture()
        let flow = try f.spool.createManagedFlow(ownerKey: "s2", goal: "g", controllerId: "c", running: true, step: nil, stateJson: nil, source: "test").flow
            .flowId
        let chosen = "0b5f7f3e-1d2c-4b8a-9e6f-123456789abc"
        try f.drop("a", #"{"kind":"task","parentFlowId":"\#(flow)","taskId":"\#(chosen)","runtime":"subagent"}"#)
        try f.drop("b", #"{"kind":"task-update","taskId":"\#(chosen)","status":"running","progressSummary":"half"}"#)
        let r = try f.spool.ingest()
        #expect(r.applied == 2)
        let task = try f.spool.readTask(flowId: flow, taskId: chosen)
        #expect(task.status == .running)
        #expect(task.string(.progressSummary) == "half")
        #expect(task.ownerKey == "s2")
    }

    @Test("every kind of invalid drop goes to rejected/ with a reason, and the rest keep flowing")
    func invalidCorpus() throws {
        let f = try DropFixture()
        let done = try f.spool.addTaskInNewFlow(ownerKey: "x", task: NewTask(runtime: "cron", status: .succeeded), goal: nil, source: "test")
        try f.drop("not-json", "{nope")
        try f.drop("array", "[1,2]")
        try f.drop("huge", #"{"kind":"task","ownerKey":"o","runtime":"cron","label":""# + String(repeating: "x", count: Spool.dropLimit) + #""}"#)
        try f.drop("types", #"{"kind":"task","ownerKey":"o","runtime":"cron","label":42}"#)
        try f.drop("status", #"{"kind":"task","ownerKey":"o","runtime":"cron","status":"paused"}"#)
        try f.drop("kind", #"{"kind":"launch"}"#)
        try f.drop("nokind", #"{"ownerKey":"o"}"#)
        try f.drop("refused", #"{"kind":"task","parentFlowId":"\#(done.snapshot.flow.flowId)","runtime":"cron"}"#)
        try f.drop("reused", #"{"kind":"task","ownerKey":"o","runtime":"cron","taskId":"\#(done.taskId)"}"#)
        try f.drop("reserved", #"{"kind":"task","ownerKey":"o","runtime":"cron","pid":1}"#)
        try f.drop("cli", #"{"kind":"task","ownerKey":"o","runtime":"cli"}"#)
        try f.drop("owner", #"{"kind":"task","ownerKey":"  ","runtime":"cron"}"#)
        #expect(symlink("/etc/passwd", f.tmp.file("incoming/new/symlink")) == 0)
        #expect(mkfifo(f.tmp.file("incoming/new/fifo"), 0o644) == 0)
        try f.drop("hardlink", #"{"kind":"task","ownerKey":"o","runtime":"cron"}"#)
        #expect(link(f.tmp.file("incoming/new/hardlink"), f.tmp.parent + "/other-link") == 0)
        try f.drop("bad name", #"{"kind":"task","ownerKey":"o","runtime":"cron"}"#)
        try f.drop("good", #"{"kind":"task","ownerKey":"fine","runtime":"cron"}"#)
        let r = try f.spool.ingest()
        #expect(r.applied == 1)
        #expect(r.rejected == 16)
        let expected: [String: String] = [
            "not-json": "not_json", "array": "not_json", "huge": "too_large", "types": "bad_fields", "status": "bad_fields",
            "kind": "unknown_kind", "nokind": "unknown_kind", "refused": "link_refused", "reused": "reused_task_id",
            "reserved": "bad_fields", "cli": "bad_fields", "owner": "bad_fields", "symlink": "not_regular_file",
            "fifo": "not_regular_file", "hardlink": "hard_link",
        ]
        for (name, code) in expected {
            #expect(try f.reason(name)["code"] as? String == code, "\(name)")
            #expect(FileManager.default.fileExists(atPath: f.tmp.file("rejected/" + name)) || link(f.tmp.file("rejected/" + name)) != nil, "\(name) kept")
        }
        let badName = names(f.tmp.file("rejected")).first { $0.hasPrefix("badname-") && !$0.hasSuffix(".reason") }
        #expect(badName != nil)
        #expect(link(f.tmp.file("rejected/symlink")) == "/etc/passwd")
        #expect(f.spool.flowId(forOwner: "fine") != nil)
        #expect(names(f.tmp.file("incoming/new")).isEmpty)
        #expect(try f.spool.fsck(repair: false).findings.isEmpty)
    }

    @Test("an update for a task not known yet waits, and is rejected only after a minute")
    func waitingUpdate() throws {
        let f = try DropFixture()
        let id = "0b5f7f3e-1d2c-4b8a-9e6f-000000000001"
        try f.drop("early", #"{"kind":"task-update","taskId":"\#(id)","status":"succeeded"}"#)
        var r = try f.spool.ingest()
        #expect(r.waiting == 1 && r.rejected == 0)
        #expect(names(f.tmp.file("incoming/new")) == ["early"])
        // Its task arrives (later): the next pass applies both.
        try f.drop("task", #"{"kind":"task","ownerKey":"w","runtime":"cron","taskId":"\#(id)","status":"running"}"#)
        r = try f.spool.ingest()
        r = try f.spool.ingest()
        #expect(try f.spool.readTask(flowId: f.spool.resolveTask(id).flowId, taskId: id).status == .succeeded)
        // An update whose task never comes is rejected once it has been here a minute. Its
        // own dates do not count (a year ahead, or 1970): the minute runs from its arrival.
        try f.drop("orphan", #"{"kind":"task-update","runId":"nobody","status":"failed"}"#)
        try f.drop("future", #"{"kind":"task-update","runId":"nobody-2","status":"failed"}"#)
        try f.drop("past", #"{"kind":"task-update","runId":"nobody-3","status":"failed"}"#)
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 365 * 86_400)], ofItemAtPath: f.tmp.file("incoming/new/future"))
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: 0)], ofItemAtPath: f.tmp.file("incoming/new/past"))
        r = try f.spool.ingest()
        #expect(r.rejected == 0 && r.waiting == 3, "a drop dated 1970 waits its minute too: \(r)")
        r = try f.spool.ingest(now: Timestamp(milliseconds: Spool.now().milliseconds + 61_000))
        #expect(r.rejected == 3, "a drop dated a year ahead waits a minute, not a year: \(r)")
        #expect(try f.reason("orphan")["code"] as? String == "unknown_task")
        #expect(try f.reason("future")["code"] as? String == "unknown_task")
    }

    @Test("an update that sorts before its task's drop (the same instant) is applied in the same pass")
    func updateBeforeItsTask() throws {
        let f = try DropFixture()
        try f.drop("n42.json", #"{"kind":"task","ownerKey":"session-1","runtime":"cron","runId":"nightly-42","status":"running"}"#)
        try f.drop("n42-done.json", #"{"kind":"task-update","runId":"nightly-42","status":"succeeded"}"#)
        let same = Date()
        for name in ["n42.json", "n42-done.json"] {
            try FileManager.default.setAttributes([.modificationDate: same], ofItemAtPath: f.tmp.file("incoming/new/" + name))
        }
        let r = try f.spool.ingest()
        #expect(r.applied == 2 && r.waiting == 0 && r.rejected == 0, "\(r)")
        #expect(try f.spool.tasks(withRunId: "nightly-42").first?.status == .succeeded)
    }

    @Test("a name applied in the last 7 days is a repeat: deleted, logged, not applied again")
    func repeats() throws {
        let f = try DropFixture()
        try f.drop("same", #"{"kind":"task","ownerKey":"r","runtime":"cron"}"#)
        _ = try f.spool.ingest()
        try f.drop("same", #"{"kind":"task","ownerKey":"r","runtime":"cron"}"#)
        let r = try f.spool.ingest()
        #expect(r.repeats == 1 && r.applied == 0)
        #expect(try f.tasks().count == 1)
        let flowId = try #require(f.spool.flowId(forOwner: "r"))
        let log = try String(contentsOfFile: f.tmp.file("flows/\(flowId)/events.jsonl"), encoding: .utf8)
        #expect(log.contains(#""event":"drop""#) && log.contains(#""repeat":true"#))
        // After 7 days the name is free again.
        let old = Date(timeIntervalSinceNow: -8 * 86_400)
        var times = [timespec(tv_sec: Int(old.timeIntervalSince1970), tv_nsec: 0), timespec(tv_sec: Int(old.timeIntervalSince1970), tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, f.tmp.file("incoming/applied/same"), &times, AT_SYMLINK_NOFOLLOW) == 0)
        try f.drop("same", #"{"kind":"task","ownerKey":"r","runtime":"cron"}"#)
        #expect(try f.spool.ingest().applied == 1)
        #expect(try f.tasks().count == 2)
    }

    @Test("a name reused with other content is refused as repeated_name and kept; only the same bytes are a replay")
    func reusedNameWithOtherContent() throws {
        let f = try DropFixture()
        try f.drop("job.json", #"{"kind":"task","ownerKey":"p","runtime":"cron","runId":"p1","status":"running"}"#)
        let tenPercent = #"{"kind":"task-update","runId":"p1","progressSummary":"10 %"}"#
        try f.drop("progress.json", tenPercent)
        #expect(try f.spool.ingest().applied == 2)
        let record = try FileManager.default.destinationOfSymbolicLink(atPath: f.tmp.file("incoming/applied/progress.json"))
        #expect(record.hasSuffix("#" + SHA256.hex(Array(tenPercent.utf8))), "the applied record keeps the drop's digest: \(record)")
        // The same name with new content: refused with a reason that tells the writer what to do.
        let ninety = #"{"kind":"task-update","runId":"p1","progressSummary":"90 %"}"#
        try f.drop("progress.json", ninety)
        var r = try f.spool.ingest()
        #expect(r.rejected == 1 && r.applied == 0 && r.repeats == 0)
        let reason = try f.reason("progress.json")
        #expect(reason["code"] as? String == "repeated_name")
        #expect((reason["message"] as? String)?.contains("give every drop a name of its own") == true, "\(reason)")
        #expect(try String(contentsOfFile: f.tmp.file("rejected/progress.json"), encoding: .utf8) == ninety, "the bytes are kept")
        #expect(try f.tasks()[0].string(.progressSummary) == "10 %")
        // A true replay (the same bytes) is still deleted as a repeat.
        try f.drop("progress.json", tenPercent)
        r = try f.spool.ingest()
        #expect(r.repeats == 1 && r.rejected == 0)
        #expect(!names(f.tmp.file("incoming/new")).contains("progress.json"))
        // A record written before records carried a digest: any content is a repeat, as before.
        let flowId = try #require(f.spool.flowId(forOwner: "p"))
        #expect(unlink(f.tmp.file("incoming/applied/job.json")) == 0 && symlink("../../flows/" + flowId, f.tmp.file("incoming/applied/job.json")) == 0)
        try f.drop("job.json", #"{"kind":"task","ownerKey":"p","runtime":"cron","label":"other"}"#)
        #expect(try f.spool.ingest().repeats == 1)
        // audit reports the refused drop with its code.
        let audit = Clawflow.run(["--spool", f.tmp.path, "audit", "--json"])
        let document = (try? JSONSerialization.jsonObject(with: Data(audit.stdout.utf8))) as? [String: Any]
        let findings = (document?["findings"] as? [[String: Any]]) ?? []
        #expect(
            findings.contains { $0["code"] as? String == "rejected_drops" && ($0["message"] as? String)?.contains("repeated_name") == true }, "\(audit.stdout)")
    }

    @Test("a claim whose drop still has its own name in incoming/new (a power cut kept both) is finished, not refused as a hard link")
    func claimBesideItsName() throws {
        let f = try DropFixture()
        try f.drop("both", #"{"kind":"task","ownerKey":"two","runtime":"cron"}"#)
        let task = Identifier.uuidV7(milliseconds: 1_795_000_000_000, random: Array(repeating: 3, count: 10))
        let flow = Identifier.uuidV7(milliseconds: 1_795_000_000_000, random: Array(repeating: 4, count: 10))
        #expect(link(f.tmp.file("incoming/new/both"), f.tmp.file("incoming/claimed/both#\(task)#\(flow)")) == 0)
        let r = try f.spool.ingest()
        #expect(r.applied == 1 && r.rejected == 0 && r.recovered == 1, "\(r)")
        #expect(try f.spool.readFlow(flow).tasks.map(\.taskId) == [task])
        #expect(names(f.tmp.file("incoming/new")).isEmpty && names(f.tmp.file("incoming/claimed")).isEmpty)
        #expect(names(f.tmp.file("rejected")).isEmpty)
        // A true hard link (a second name that is not the drop's own) is still refused.
        try f.drop("linked", #"{"kind":"task","ownerKey":"hl","runtime":"cron"}"#)
        #expect(link(f.tmp.file("incoming/new/linked"), f.tmp.file("incoming/tmp/other")) == 0)
        #expect(try f.spool.ingest().rejected == 1)
        #expect(try f.reason("linked")["code"] as? String == "hard_link")
    }

    @Test("a drop whose record clawflow could not read back is refused too_large; what is accepted reads back and changes again")
    func nothingAcceptedBecomesUnreadable() throws {
        let f = try DropFixture()
        // Exactly 1 MiB of drop: its task record (with clawflow's fields) would be larger.
        let base = #"{"kind":"task","ownerKey":"big","runtime":"cron","label":""}"#
        let full = base.replacingOccurrences(of: #""label":"""#, with: #""label":""# + String(repeating: "a", count: Spool.dropLimit - base.utf8.count) + "\"")
        #expect(full.utf8.count == Spool.dropLimit)
        try f.drop("full", full)
        // DEL bytes are written escaped (six bytes each): a 1,000,000-byte drop grows past the limit.
        try f.drop("del", #"{"kind":"task","ownerKey":"del","runtime":"cron","label":""# + String(repeating: "\u{7F}", count: 999_900) + #""}"#)
        // Nested as deep as a record can hold: accepted, and readable.
        let deep = String(repeating: "[", count: 511) + "1" + String(repeating: "]", count: 511)
        try f.drop("deep", #"{"kind":"task","ownerKey":"deep","runtime":"cron","runId":"deep-1","nested":"# + deep + "}")
        var r = try f.spool.ingest()
        #expect(r.applied == 1 && r.rejected == 2, "\(r)")
        #expect(try f.reason("full")["code"] as? String == "too_large")
        #expect(try f.reason("del")["code"] as? String == "too_large")
        // An update that would push a readable task past the limit is refused; the task stays readable and changeable.
        try f.drop("grow", #"{"kind":"task-update","runId":"deep-1","progressSummary":""# + String(repeating: "\u{7F}", count: 200_000) + #""}"#)
        try f.drop("small", #"{"kind":"task-update","runId":"deep-1","status":"succeeded"}"#)
        r = try f.spool.ingest()
        #expect(r.applied == 1 && r.rejected == 1, "\(r)")
        #expect(try f.reason("grow")["code"] as? String == "too_large")
        #expect(try f.spool.tasks(withRunId: "deep-1").first?.status == .succeeded)
        let report = try f.spool.fsck(repair: false)
        #expect(report.findings.isEmpty, "\(report.findings)")
    }

    @Test("a drop whose name is still in incoming/tmp too (its rename half undone by a power cut without a journal) is applied, and that name removed")
    func renameLeftover() throws {
        let f = try DropFixture()
        try f.drop("kept.json", #"{"kind":"task","ownerKey":"rl","runtime":"cron"}"#)
        #expect(link(f.tmp.file("incoming/new/kept.json"), f.tmp.file("incoming/tmp/kept.json")) == 0)
        // The same with a claim made before the cut (link count 3).
        try f.drop("claimed.json", #"{"kind":"task","ownerKey":"rl2","runtime":"cron"}"#)
        let task = Identifier.uuidV7(milliseconds: 1_795_000_000_000, random: Array(repeating: 5, count: 10))
        let flow = Identifier.uuidV7(milliseconds: 1_795_000_000_000, random: Array(repeating: 6, count: 10))
        #expect(link(f.tmp.file("incoming/new/claimed.json"), f.tmp.file("incoming/tmp/claimed.json")) == 0)
        #expect(link(f.tmp.file("incoming/new/claimed.json"), f.tmp.file("incoming/claimed/claimed.json#\(task)#\(flow)")) == 0)
        let r = try f.spool.ingest()
        #expect(r.applied == 2 && r.rejected == 0 && r.recovered == 1, "\(r)")
        #expect(f.spool.flowId(forOwner: "rl") != nil)
        #expect(try f.spool.readFlow(flow).tasks.map(\.taskId) == [task])
        for dir in ["incoming/tmp", "incoming/new", "incoming/claimed", "rejected"] {
            #expect(names(f.tmp.file(dir)).isEmpty, "\(dir)")
        }
        // Another file under that name in incoming/tmp is left alone, and the link refused.
        try f.drop("other.json", #"{"kind":"task","ownerKey":"rl3","runtime":"cron"}"#)
        #expect(link(f.tmp.file("incoming/new/other.json"), f.tmp.parent + "/outside") == 0)
        try "someone's draft".write(toFile: f.tmp.file("incoming/tmp/other.json"), atomically: false, encoding: .utf8)
        #expect(try f.spool.ingest().rejected == 1)
        #expect(try f.reason("other.json")["code"] as? String == "hard_link")
        #expect(names(f.tmp.file("incoming/tmp")) == ["other.json"])
    }

    @Test("a claim a power cut brought back after its drop was applied, whose inode now holds another file, is removed, not applied or refused")
    func staleClaim() throws {
        let f = try DropFixture()
        let id = "0b5f7f3e-1d2c-4b8a-9e6f-0000000000aa"
        try f.drop("first.json", #"{"kind":"task","ownerKey":"sc","runtime":"cron","taskId":"\#(id)"}"#)
        try f.drop("upd.json", #"{"kind":"task-update","taskId":"\#(id)","status":"running"}"#)
        #expect(try f.spool.ingest().applied == 2)
        let flow = try #require(f.spool.flowId(forOwner: "sc"))
        let record = try #require(link(f.tmp.file("incoming/applied/upd.json")))
        // The update's claim, back under its name; its inode reused by another file: a task
        // record, and then another drop.
        let claim = f.tmp.file("incoming/claimed/upd.json#\(id)#\(flow)")
        for other in [f.tmp.file("flows/\(flow)/tasks/\(id).json"), f.tmp.file("incoming/tmp/other.json")] {
            if !FileManager.default.fileExists(atPath: other) {
                try #"{"kind":"task-update","taskId":"\#(id)","status":"failed"}"#.write(toFile: other, atomically: false, encoding: .utf8)
            }
            #expect(Glibc.link(other, claim) == 0)
            let r = try f.spool.ingest()
            #expect(r.applied == 0 && r.rejected == 0, "\(r)")
            #expect(!FileManager.default.fileExists(atPath: claim))
            #expect(FileManager.default.fileExists(atPath: other))
            #expect(names(f.tmp.file("rejected")).isEmpty)
            #expect(link(f.tmp.file("incoming/applied/upd.json")) == record)
            #expect(try f.spool.readTask(flowId: flow, taskId: id).status == .running)
        }
    }

    @Test("an applied record that names no flow (its claim undone by a crash) does not make the drop a repeat")
    func staleAppliedRecord() throws {
        let f = try DropFixture()
        let ghost = Identifier.uuidV7(milliseconds: 1_795_000_000_000, random: Array(repeating: 7, count: 10))
        #expect(symlink("../../flows/" + ghost, f.tmp.file("incoming/applied/job")) == 0)
        try f.drop("job", #"{"kind":"task","ownerKey":"g","runtime":"cron"}"#)
        let r = try f.spool.ingest()
        #expect(r.applied == 1 && r.repeats == 0)
        let flowId = try #require(f.spool.flowId(forOwner: "g"))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: f.tmp.file("incoming/applied/job")).hasPrefix("../../flows/\(flowId)#"))
    }

    @Test("a claim refused when it is finished loses its applied record, so the name is free again")
    func refusedClaimForgetsRecord() throws {
        let f = try DropFixture()
        let task = Identifier.uuidV7(milliseconds: 1_795_000_000_000, random: Array(repeating: 1, count: 10))
        let flow = Identifier.uuidV7(milliseconds: 1_795_000_000_000, random: Array(repeating: 2, count: 10))
        try "not json".write(toFile: f.tmp.file("incoming/claimed/bad#\(task)#\(flow)"), atomically: false, encoding: .utf8)
        #expect(symlink("../../flows/" + flow, f.tmp.file("incoming/applied/bad")) == 0)
        let r = try f.spool.ingest()
        #expect(r.rejected == 1 && r.applied == 0)
        #expect(try f.reason("bad")["code"] as? String == "not_json")
        #expect(!names(f.tmp.file("incoming/applied")).contains("bad"))
        try f.drop("bad", #"{"kind":"task","ownerKey":"b","runtime":"cron"}"#)
        #expect(try f.spool.ingest().applied == 1)
    }

    @Test("a late report on a final task is ignored and logged, not rejected")
    func lateReport() throws {
        let f = try DropFixture()
        let (snap, taskId) = try f.spool.addTaskInNewFlow(ownerKey: "l", task: NewTask(runtime: "cron", status: .failed), goal: nil, source: "test")
        try f.drop("late", #"{"kind":"task-update","taskId":"\#(taskId)","status":"succeeded"}"#)
        let r = try f.spool.ingest()
        #expect(r.applied == 1 && r.rejected == 0)
        #expect(try f.spool.readTask(flowId: snap.flow.flowId, taskId: taskId).status == .failed)
        let log = try String(contentsOfFile: f.tmp.file("flows/\(snap.flow.flowId)/events.jsonl"), encoding: .utf8)
        #expect(log.contains(#""event":"ignored""#) && log.contains(#""drop":"late""#))
    }

    @Test("drops are applied in arrival order: modification time, then name")
    func arrivalOrder() throws {
        let f = try DropFixture()
        try f.drop("b-second", #"{"kind":"task","ownerKey":"o1","runtime":"cron","runId":"x","label":"second"}"#, age: 5)
        try f.drop("z-first", #"{"kind":"task","ownerKey":"o1","runtime":"cron","runId":"x","label":"first"}"#, age: 10)
        _ = try f.spool.ingest()
        let tasks = try f.tasks().sorted { ($0.createdAt, $0.taskId) < ($1.createdAt, $1.taskId) }
        #expect(tasks.map { $0.string(.label) } == ["first", "second"])
    }

    @Test("init --shared-group makes a drop box other users of the group can write, and nothing else")
    func sharedGroup() throws {
        let tmp = TemporarySpool()
        _ = try Spool.initialize(at: FilePath(tmp.path), sharedGroup: 100)
        func mode(_ p: String) throws -> (Int, Int) {
            let a = try FileManager.default.attributesOfItem(atPath: p)
            return ((a[.posixPermissions] as? Int) ?? -1, (a[.groupOwnerAccountID] as? Int) ?? -1)
        }
        #expect(try mode(tmp.path) == (0o710, 100))
        #expect(try mode(tmp.file("incoming")) == (0o710, 100))
        #expect(try mode(tmp.file("incoming/tmp")) == (0o1730, 100))
        #expect(try mode(tmp.file("incoming/new")) == (0o1730, 100))
        #expect(try mode(tmp.file("cancel")) == (0o2710, 100), "members reach their cancel markers by name")
        #expect(try mode(tmp.file("flows")).0 == 0o700)
        #expect(try mode(tmp.file("incoming/claimed")).0 == 0o700)
    }
}

@Suite("Exactly-once ingest across crashes", .serialized)
struct IngestCrashTests {
    @Test("ingest killed at random moments over 200 task drops and their updates applies each drop exactly once")
    func killedIngest() throws {
        let f = try DropFixture()
        let count = 200
        for i in 0..<count {
            try f.drop("d\(i)", #"{"kind":"task","ownerKey":"k\#(i % 9)","runtime":"cron","runId":"run-\#(i)","status":"running"}"#)
            if i % 3 == 0 { try f.drop("u\(i)", #"{"kind":"task-update","runId":"run-\#(i)","status":"succeeded"}"#) }
        }
        var generator = SystemRandomNumberGenerator()
        var kills = 0
        for _ in 0..<30 {
            let pid = spawnShell("exec \"$CLAWFLOW\" --spool \"$SPOOL\" ingest >/dev/null", environment: ["CLAWFLOW": Clawflow.binary, "SPOOL": f.tmp.path])
            usleep(UInt32.random(in: 5_000...80_000, using: &generator))
            if kill(pid, SIGKILL) == 0 { kills += 1 }
            reap(pid)
            if names(f.tmp.file("incoming/new")).isEmpty && names(f.tmp.file("incoming/claimed")).isEmpty { break }
        }
        let last = f.tmp.run(["ingest"])
        #expect(last.status == 0, "\(last.stdout)\(last.stderr)")
        #expect(kills > 0)
        let tasks = try f.tasks()
        #expect(tasks.count == count)
        #expect(Set(tasks.compactMap(\.runId)).count == count)
        for t in tasks {
            let i = Int(t.runId!.dropFirst(4))!
            #expect(t.status == (i % 3 == 0 ? .succeeded : .running), "run-\(i)")
        }
        #expect(names(f.tmp.file("incoming/new")).isEmpty)
        #expect(names(f.tmp.file("incoming/claimed")).isEmpty)
        #expect(names(f.tmp.file("rejected")).isEmpty)
        let report = try f.spool.fsck(repair: false)
        #expect(report.findings.isEmpty, "\(report.findings)")
    }

    /// Syscalls at whose N-th call the batched path is killed: its flushes (a grouped
    /// transaction's barriers are syncfs calls), its renames, claims, records and staging.
    static let batchSteps = ["syncfs", "renameat2", "linkat", "symlinkat", "mkdirat", "openat", "unlinkat"]

    @Test(
        "a batch of new-flow drops killed at the N-th flush, rename, link or file of its transaction is applied exactly once by the next pass",
        arguments: batchSteps)
    func killedBatch(syscall: String) throws {
        let f = try DropFixture()
        let count = 12  // over Spool.groupCommitMinimum: one grouped transaction
        var made = 0
        var killedAt: [Int] = []
        // N = 1, 2, 3, ... (every 12th past 8: later steps repeat per drop) until a pass is
        // no longer killed because it made fewer such calls. Each killed pass is followed by
        // a clean one, which must finish what it left.
        for n in 1...1000 where n <= 8 || n % 12 == 0 {
            for i in 0..<count {
                try f.drop("b\(n)-\(i)", #"{"kind":"task","ownerKey":"b\#(n)-\#(i)","runtime":"cron","runId":"b\#(n)-\#(i)"}"#)
            }
            made += count
            let r = runProgram(
                "/usr/bin/strace",
                [
                    "-f", "-o", "/dev/null", "-e", "trace=\(syscall)", "-e", "inject=\(syscall):signal=KILL:when=\(n)", "--", Clawflow.binary, "--spool",
                    f.tmp.path, "ingest",
                ])
            let report = try f.spool.fsck(repair: false)
            #expect(report.findings.isEmpty, "after a kill at \(syscall) #\(n): \(report.findings)")
            if r.status == 0 { break }
            killedAt.append(n)
            let next = f.tmp.run(["ingest"])
            #expect(next.status == 0, "after a kill at \(syscall) #\(n): \(next.stdout)\(next.stderr)")
        }
        #expect(!killedAt.isEmpty, "strace never killed ingest at \(syscall)")
        let last = f.tmp.run(["ingest"])
        #expect(last.status == 0, "\(last.stdout)\(last.stderr)")
        let runIds = try f.tasks().compactMap(\.runId)
        #expect(runIds.count == made && Set(runIds).count == made, "\(made) drops, \(runIds.count) tasks, \(Set(runIds).count) distinct")
        #expect(names(f.tmp.file("incoming/new")).isEmpty && names(f.tmp.file("incoming/claimed")).isEmpty)
        #expect(names(f.tmp.file("rejected")).isEmpty)
        let report = try f.spool.fsck(repair: false)
        #expect(report.findings.isEmpty, "\(report.findings)")
    }

    /// The lines of an strace of `clawflow ingest` on the fixture's spool (descriptors shown as paths).
    static func tracedIngest(_ f: DropFixture) throws -> [String] {
        let trace = f.tmp.path + ".trace"
        defer { try? FileManager.default.removeItem(atPath: trace) }
        let r = runProgram(
            "/usr/bin/strace",
            [
                "-f", "-qq", "-y", "-e", "trace=fsync,openat,renameat,renameat2,symlinkat,unlinkat,linkat", "-o", trace, "--", Clawflow.binary, "--spool",
                f.tmp.path, "ingest",
            ])
        #expect(r.status == 0, "\(r.stderr)")
        return try String(contentsOfFile: trace, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    @Test("a drop's claim and applied record are flushed in the barriers of its change, in the order that keeps it exactly once")
    func flushOrder() throws {
        let f = try DropFixture()
        func first(_ lines: [String], _ parts: String...) -> Int? {
            lines.firstIndex { line in parts.allSatisfy { line.contains($0) } }
        }
        // A drop that creates a flow: its applied record is made and flushed before the
        // flow's rename into flows/; its claim is never flushed.
        try f.drop("new-1", #"{"kind":"task","ownerKey":"o","runtime":"cron","taskId":"0b5f7f3e-1d2c-4b8a-9e6f-123456789abc"}"#)
        var lines = try Self.tracedIngest(f)
        let record = try #require(first(lines, "symlinkat(", "incoming/applied>", "\"new-1\""))
        let recordFlush = try #require(first(lines, "fsync(", "incoming/applied>"))
        let intoFlows = try #require(first(lines, "renameat2(", "/tmp>", "/flows>"))
        #expect(record < recordFlush && recordFlush < intoFlows, "\(lines)")
        #expect(first(lines, "fsync(", "incoming/claimed>") == nil, "\(lines)")
        // The rename moves the flow out of tmp/ too: both directories are flushed after it
        // (without a journal a power cut could otherwise keep both names).
        let stagingFlush = try #require(lines.lastIndex { $0.contains("fsync(") && $0.contains("/spool/tmp>") })
        #expect(intoFlows < stagingFlush, "\(lines)")
        // The drop is claimed by a second name, and its own name goes only once the change is durable.
        let claimed = try #require(first(lines, "linkat(", "incoming/new>", "incoming/claimed>", "\"new-1\""))
        let released = try #require(first(lines, "unlinkat(", "incoming/new>", "\"new-1\""))
        #expect(claimed < recordFlush && intoFlows < released, "\(lines)")
        // An update of that task: its claim is flushed with the new task file, before that
        // file's rename; the applied record is made after the records and flushed before
        // the claim is deleted, each in one of the change's own barriers.
        try f.drop("upd-1", #"{"kind":"task-update","taskId":"0b5f7f3e-1d2c-4b8a-9e6f-123456789abc","status":"running"}"#)
        lines = try Self.tracedIngest(f)
        let tempTask = try #require(first(lines, "openat(", ".0b5f7f3e-1d2c-4b8a-9e6f-123456789abc.json.", "O_CREAT"))
        let claimFlush = try #require(first(lines, "fsync(", "incoming/claimed>"))
        let taskRename = try #require(first(lines, "renameat(", "/tasks>", "\"0b5f7f3e-1d2c-4b8a-9e6f-123456789abc.json\""))
        let updRecord = try #require(first(lines, "symlinkat(", "incoming/applied>", "\"upd-1\""))
        let updFlush = try #require(first(lines, "fsync(", "incoming/applied>"))
        let claimRemoved = try #require(first(lines, "unlinkat(", "incoming/claimed>", "upd-1#"))
        #expect(tempTask < claimFlush && claimFlush < taskRename, "\(lines)")
        #expect(taskRename < updRecord && updRecord < updFlush && updFlush < claimRemoved, "\(lines)")
        #expect(lines.filter { $0.contains("fsync(") && $0.contains("incoming/") }.count == 2, "\(lines)")
        #expect(try f.spool.readTask(flowId: try #require(f.spool.flowId(forOwner: "o")), taskId: "0b5f7f3e-1d2c-4b8a-9e6f-123456789abc").status == .running)
    }
}
