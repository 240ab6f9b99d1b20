import ClawflowTestSupport
import Foundation
import Testing

/// The text of `column` in a table `row`, the table's columns starting where the header's names do.
func tableCell(_ header: String, _ row: String, _ column: String) -> String? {
    guard let start = header.range(of: column)?.lowerBound else { return nil }
    let from = header.distance(from: header.startIndex, to: start)
    let rest = header[header.index(after: start)...]
    let next = rest.firstIndex { $0 == " " }.flatMap { space in rest[space...].firstIndex { $0 != " " } }
    let to = next.map { header.distance(from: header.startIndex, to: $0) } ?? row.count
    guard from < row.count else { return nil }
    let chars = Array(row)
    return String(chars[from..<min(to, chars.count)]).trimmingCharacters(in: .whitespaces)
}

@Suite("Listing fit for a queue: flows list columns and --limit, tasks list filters, pending steps, cancel --all", .serialized)
struct QueueListingTests {
    @Test("flows list shows each flow's owner, queue, duration and a command job's exit status")
    func newColumns() {
        let tmp = TemporarySpool()
        let failed = tmp.startJob(["--owner", "builder", "--queue", "ci", "--", "sh", "-c", "exit 3"])
        #expect(tmp.run(["wait", failed.flow]).status == 1)
        let killed = tmp.startJob(["--owner", "killer", "--", "sh", "-c", "kill -9 $$"])
        #expect(tmp.run(["wait", killed.flow]).status == 1)
        tmp.addTask(owner: "mail", status: "running")
        let r = tmp.run(["flows", "list"])
        #expect(r.status == 0 && r.stderr == "")
        let out = lines(r.stdout)
        guard out.count == 5 else {
            Issue.record("expected a summary, a header and 3 rows: \(r.stdout)")
            return
        }
        let header = out[1]
        #expect(header.split(separator: " ") == ["FLOW", "MODE", "STATUS", "REV", "CONTROLLER", "OWNER", "QUEUE", "TASKS", "DURATION", "EXIT", "GOAL"])
        let (mail, kill, fail) = (out[2], out[3], out[4])
        #expect(tableCell(header, mail, "OWNER") == "mail")
        #expect(tableCell(header, mail, "QUEUE") == "-", "a mirrored external task is in no queue")
        #expect(tableCell(header, mail, "EXIT") == "-")
        #expect(tableCell(header, mail, "DURATION")?.hasSuffix(" s") == true, "a running task has run for some seconds")
        #expect(tableCell(header, kill, "OWNER") == "killer")
        #expect(tableCell(header, kill, "QUEUE") == "default")
        #expect(tableCell(header, kill, "EXIT") == "SIGKILL")
        #expect(tableCell(header, fail, "OWNER") == "builder")
        #expect(tableCell(header, fail, "QUEUE") == "ci")
        #expect(tableCell(header, fail, "EXIT") == "3")
        #expect(tableCell(header, fail, "STATUS") == "failed")
        #expect(tableCell(header, fail, "DURATION")?.hasSuffix(" s") == true)
    }

    @Test("flows list shows no duration for a job that has not started")
    func queuedHasNoDuration() {
        let tmp = TemporarySpool()
        let gate = tmp.parent + "/gate"
        #expect(tmp.run(["queue", "set", "one", "--slots", "1"]).status == 0)
        let first = tmp.startJob(["--owner", "first", "--queue", "one", "--", "sh", "-c", "while [ ! -e \(gate) ]; do sleep 0.02; done"])
        let second = tmp.startJob(["--owner", "second", "--queue", "one", "--", "true"])
        let out = lines(tmp.value(["flows", "list", "--owner", "second"]))
        #expect(out.count == 3)
        if out.count == 3 {
            #expect(tableCell(out[1], out[2], "STATUS") == "queued")
            #expect(tableCell(out[1], out[2], "DURATION") == "-")
            #expect(tableCell(out[1], out[2], "EXIT") == "-")
        }
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(tmp.run(["wait", first.flow, second.flow]).status == 0)
    }

    @Test("flows list --limit N lists the newest N flows, and the summary line still counts them all")
    func limit() {
        let tmp = TemporarySpool()
        let ids = (0..<4).map { tmp.addTask(owner: "o\($0)", status: "succeeded").flow }
        let out = lines(tmp.value(["flows", "list", "--limit", "2"]))
        #expect(out.count == 4)
        #expect(out.first == "4 flows: 0 active, 4 finished")
        #expect(out.dropFirst(2).map { String($0.prefix { $0 != " " }) }.enumerated().allSatisfy { ids[3 - $0.offset].hasPrefix($0.element) })
        let doc = tmp.json(["flows", "list", "--limit", "1"])
        #expect(doc["count"] as? Int == 1)
        #expect((doc["flows"] as? [[String: Any]])?.map { $0["flowId"] as? String } == [ids[3]])
        #expect((doc["status"] as? [String: Any])?["total"] as? Int == 4)
        #expect(tmp.json(["flows", "list", "--limit", "9"])["count"] as? Int == 4)
        let zero = tmp.run(["flows", "list", "--limit", "0"])
        #expect(zero.status == 64)
        #expect(zero.stderr.contains("--limit must be at least 1"))
    }

    @Test("tasks list keeps the tasks of an owner, a flow, a runtime or a queue, and all of them together")
    func taskFilters() {
        let tmp = TemporarySpool()
        let job = tmp.startJob(["--owner", "alice", "--queue", "q1", "--", "true"])
        #expect(tmp.run(["wait", job.flow]).status == 0)
        let cron = tmp.addTask(owner: "alice", runtime: "cron", status: "running")
        let other = tmp.addTask(owner: "bob", runtime: "cron", status: "running")
        func ids(_ args: [String]) -> Set<String> {
            let doc = tmp.json(["tasks", "list"] + args)
            return Set((doc["tasks"] as? [[String: Any]] ?? []).compactMap { $0["taskId"] as? String })
        }
        #expect(ids(["--owner", "alice"]) == [job.task, cron.task])
        #expect(ids(["--owner", "bob"]) == [other.task])
        #expect(ids(["--runtime", "cli"]) == [job.task])
        #expect(ids(["--runtime", "cron"]) == [cron.task, other.task])
        #expect(ids(["--queue", "q1"]) == [job.task])
        #expect(ids(["--queue", "default"]).isEmpty)
        #expect(ids(["--flow", other.flow]) == [other.task])
        #expect(ids(["--flow", "bob"]) == [other.task], "an owner key names its flow")
        #expect(ids(["--owner", "alice", "--runtime", "cron"]) == [cron.task])
        #expect(ids(["--owner", "alice", "--queue", "q1", "--status", "running"]).isEmpty)
        let text = tmp.run(["tasks", "list", "--queue", "q1"])
        #expect(text.status == 0 && lines(text.stdout).count == 2 && text.stdout.contains("alice"))
        let badQueue = tmp.run(["tasks", "list", "--queue", "No Such"])
        #expect(badQueue.status == 64 && badQueue.stderr.contains("Invalid queue name"))
        let badRuntime = tmp.run(["tasks", "list", "--runtime", "A!"])
        #expect(badRuntime.status == 64 && badRuntime.stderr.contains("Invalid runtime"))
        let missing = tmp.run(["tasks", "list", "--flow", "nobody"])
        #expect(missing.status == 1 && missing.stderr.contains("Flow not found: nobody"))
    }

    @Test("flows show of a sequence lists the steps not started yet, and none once every step ran")
    func pendingSteps() {
        let tmp = TemporarySpool()
        let stopped = tmp.startJob(["--owner", "seq", "--goal", "three steps", "--step", "exit 1", "--step", "echo two", "--step", "echo three"])
        #expect(tmp.run(["wait", stopped.flow]).status == 1)
        let out = lines(tmp.value(["flows", "show", stopped.flow]))
        guard let at = out.firstIndex(of: "Steps not started (2)"), out.count >= at + 4 else {
            Issue.record("no pending steps section: \(out)")
            return
        }
        #expect(out[at + 1].split(separator: " ") == ["STEP", "COMMAND"])
        #expect(out[at + 2].hasPrefix("step 2") && out[at + 2].hasSuffix("echo two"))
        #expect(out[at + 3].hasPrefix("step 3") && out[at + 3].hasSuffix("echo three"))
        let done = tmp.startJob(["--owner", "seq-ok", "--goal", "two steps", "--step", "true", "--step", "true"])
        #expect(tmp.run(["wait", done.flow]).status == 0)
        #expect(!tmp.value(["flows", "show", done.flow]).contains("Steps not started"))
    }

    @Test("flows cancel OWNER --all cancels every live flow of the owner, queued ones without running them, and no other owner's")
    func cancelAll() {
        let tmp = TemporarySpool()
        let gate = tmp.parent + "/gate"
        let ran = tmp.parent + "/ran"
        #expect(tmp.run(["queue", "set", "one", "--slots", "1"]).status == 0)
        let wait = "while [ ! -e \(gate) ]; do sleep 0.02; done"
        let batch = (0..<3).map { i in tmp.startJob(["--owner", "batch", "--queue", "one", "--", "sh", "-c", "echo \(i) >> \(ran); \(wait)"]) }
        let done = tmp.addTask(owner: "batch", status: "succeeded")
        let other = tmp.startJob(["--owner", "other", "--", "sh", "-c", wait])
        let r = tmp.run(["flows", "cancel", "batch", "--all", "--grace", "5s"])
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        #expect(lines(r.stdout).count == 3)
        #expect(lines(r.stdout).allSatisfy { $0.hasPrefix("Cancelled ") && $0.hasSuffix("with status cancelled.") })
        for job in batch { #expect(tmp.manifest(job.flow)["status"] as? String == "cancelled") }
        #expect(tmp.manifest(done.flow)["status"] as? String == "succeeded", "an ended flow is left alone")
        #expect(tmp.manifest(other.flow)["status"] as? String == "running", "another owner's flow is left alone")
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(tmp.run(["wait", other.flow]).status == 0)
        let started = (try? String(contentsOfFile: ran, encoding: .utf8)) ?? ""
        #expect(started == "0\n", "the queued jobs never ran: \(started)")
        let none = tmp.run(["flows", "cancel", "batch", "--all"])
        #expect(none.status == 0 && none.stdout == "No live flow of owner batch to cancel.\n")
        let doc = tmp.json(["flows", "cancel", "batch", "--all"])
        #expect(doc["count"] as? Int == 0 && (doc["flows"] as? [Any])?.isEmpty == true)
    }

    @Test("flows cancel OWNER --all exits 1 while an external task of one of the flows has not answered")
    func cancelAllStillActive() {
        let tmp = TemporarySpool()
        let ext = tmp.addTask(owner: "mixed", status: "running")
        let r = tmp.run(["flows", "cancel", "mixed", "--all", "--json"])
        #expect(r.status == 1)
        let doc = jsonObject(r.stdout)
        #expect(doc?["count"] as? Int == 1)
        #expect(((doc?["flows"] as? [[String: Any]])?.first?["cancelRequestedAt"]) != nil)
        #expect(tmp.manifest(ext.flow)["cancelRequestedAt"] != nil)
    }
}
