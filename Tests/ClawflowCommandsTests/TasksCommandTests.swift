import ClawflowTestSupport
import Foundation
import Synchronization
import Testing

@Suite("clawflow tasks add")
struct TasksAddTests {
    @Test("tasks set without --status reports progress only; with nothing to report it is a usage error")
    func progressOnly() {
        let tmp = TemporarySpool()
        let t = tmp.addTask(owner: "p-only", status: "running")
        tmp.value(["tasks", "set", t.task, "--progress", "step 2 of 5"])
        let record = tmp.taskRecord(t.flow, t.task)
        #expect(record["status"] as? String == "running")
        #expect(record["progressSummary"] as? String == "step 2 of 5")
        let none = tmp.run(["tasks", "set", t.task])
        #expect(none.status == 64 && none.stderr.contains("Give --status, or --progress"), "\(none.stderr)")
    }

    @Test("without a flow it prints the task id and makes a one-task mirrored flow for it")
    func newFlow() {
        let spool = TemporarySpool()
        let r = spool.run([
            "tasks", "add", "--owner", "session-1", "--runtime", "subagent", "--label", "summarise",
            "--task", "summarise inbox", "--run-id", "run-7",
        ])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        let task = r.stdout.trimmingCharacters(in: .newlines)
        #expect(r.stdout == task + "\n")
        #expect(isUUIDv7(task))
        let flows = spool.flowDirectories()
        #expect(flows.count == 1)
        let flow = flows.first ?? ""
        let t = spool.taskRecord(flow, task)
        #expect(t["taskId"] as? String == task)
        #expect(t["parentFlowId"] as? String == flow)
        #expect(t["ownerKey"] as? String == "session-1")
        #expect(t["runtime"] as? String == "subagent")
        #expect(t["status"] as? String == "queued")
        #expect(t["label"] as? String == "summarise")
        #expect(t["task"] as? String == "summarise inbox")
        #expect(t["runId"] as? String == "run-7")
        #expect(t["schema"] as? Int == 1)
        #expect(t["createdAt"] as? String != nil)
        #expect(t["startedAt"] == nil)
        #expect(t["endedAt"] == nil)
        let m = spool.manifest(flow)
        #expect(m["syncMode"] as? String == "task_mirrored")
        #expect(m["status"] as? String == "queued")
        #expect(m["revision"] as? Int == 0)
        #expect(m["goal"] as? String == "summarise")
        #expect(m["controllerId"] == nil)
        #expect(spool.events(flow).map { $0["event"] as? String } == ["created", "linked"])
    }

    @Test("--json prints the new task record, keys sorted")
    func json() {
        let spool = TemporarySpool()
        let r = spool.run(["tasks", "add", "--owner", "s", "--runtime", "cron", "--status", "running", "--json"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(keysSortedEverywhere(r.stdout))
        let doc = jsonObject(r.stdout) ?? [:]
        let id = doc["taskId"] as? String ?? ""
        let flow = doc["parentFlowId"] as? String ?? ""
        #expect(sameJSON(doc, spool.taskRecord(flow, id)))
        #expect(doc["startedAt"] as? String != nil)
        #expect(spool.manifest(flow)["status"] as? String == "running")
    }

    @Test("with a flow lookup it links the task to that managed flow under the flow's owner key")
    func link() {
        let spool = TemporarySpool()
        let flow = spool.createFlow(owner: "alice")
        let first = spool.linkTask(to: "alice", ["--label", "one"])
        let second = spool.linkTask(to: String(flow.prefix(13)), ["--owner", "  alice "])
        #expect(spool.taskRecord(flow, first)["ownerKey"] as? String == "alice")
        #expect(spool.taskRecord(flow, second)["parentFlowId"] as? String == flow)
        #expect(spool.manifest(flow)["revision"] as? Int == 0, "linking to a managed flow does not change its record")
        #expect(spool.events(flow).filter { $0["event"] as? String == "linked" }.count == 2)
    }

    @Test(
        "a link is refused (exit 1, link_refused) when the flow is mirrored, finished, cancel-requested or owned by another key",
        arguments: ["mirrored", "finished", "cancel-requested", "owner-mismatch"])
    func refused(reason: String) {
        let spool = TemporarySpool()
        var flow = ""
        var extra: [String] = []
        switch reason {
        case "mirrored":
            flow = spool.addTask(owner: "alice", status: "running").flow
        case "finished":
            flow = spool.createFlow(owner: "alice")
            spool.value(["flows", "cancel", flow])
        case "cancel-requested":
            flow = spool.createFlow(owner: "alice")
            spool.linkTask(to: flow, status: "running")
            #expect(spool.run(["flows", "cancel", flow]).status == 1)
        default:
            flow = spool.createFlow(owner: "alice")
            extra = ["--owner", "mallory"]
        }
        let before = (try? FileManager.default.contentsOfDirectory(atPath: spool.file("flows/\(flow)/tasks")))?.count
        let r = spool.run(["tasks", "add", flow, "--runtime", "cron"] + extra)
        #expect(r.status == 1)
        #expect(r.stdout == "")
        #expect(r.stderr.hasPrefix("clawflow: Cannot link the task: "))
        let j = spool.run(["tasks", "add", flow, "--runtime", "cron", "--json"] + extra)
        #expect(j.status == 1)
        #expect(errorField(jsonObject(j.stdout), "code") == "link_refused")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: spool.file("flows/\(flow)/tasks")))?.count == before)
    }

    @Test("--task-id chooses the id; reusing it is refused with link_refused and leaves nothing behind")
    func chosenId() {
        let spool = TemporarySpool()
        let id = "01234567-89ab-4def-8123-456789abcdef"
        #expect(spool.value(["tasks", "add", "--owner", "a", "--runtime", "cron", "--task-id", id]) == id)
        #expect(spool.json(["tasks", "show", id])["taskId"] as? String == id)
        let again = spool.run(["tasks", "add", "--owner", "b", "--runtime", "cron", "--task-id", id])
        #expect(again.status == 1)
        #expect(again.stderr.contains(id))
        let managed = spool.createFlow(owner: "c")
        let link = spool.run(["tasks", "add", managed, "--runtime", "cron", "--task-id", id, "--json"])
        #expect(link.status == 1)
        #expect(errorField(jsonObject(link.stdout), "code") == "link_refused")
        #expect(spool.flowDirectories().count == 2, "the refused new flow was not created")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: spool.file("tmp"))) ?? ["?"]).isEmpty)
        #expect(spool.json(["flows", "show", managed])["tasks"] as? [Any] != nil)
        #expect((spool.json(["flows", "show", managed])["tasks"] as? [Any])?.isEmpty == true)
    }

    @Test("a linked task to a missing flow is not found")
    func missingFlow() {
        let spool = TemporarySpool()
        spool.createFlow(owner: "alice")
        let r = spool.run(["tasks", "add", "nobody", "--runtime", "cron"])
        #expect(r.status == 1)
        #expect(r.stderr == "clawflow: " + flowNotFound("nobody") + "\n")
    }

    @Test("neither a flow nor --owner is a usage error")
    func noOwner() {
        let spool = TemporarySpool()
        let r = spool.run(["tasks", "add", "--runtime", "cron"])
        #expect(r.status == 64)
        #expect(r.stderr.contains("--owner"))
        #expect(!spool.exists)
    }

    @Test("concurrent adds to one flow lose no task")
    func concurrent() {
        let spool = TemporarySpool()
        let flow = spool.createFlow(owner: "alice")
        let results = Mutex<[Int32]>(Array(repeating: -1, count: 8))
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            let r = spool.run(["tasks", "add", flow, "--runtime", "cron", "--label", "t\(i)"])
            results.withLock { $0[i] = r.status }
        }
        let statuses = results.withLock { $0 }
        #expect(statuses == Array(repeating: 0, count: 8))
        let doc = spool.json(["flows", "show", flow])
        #expect((doc["tasks"] as? [Any])?.count == 8)
        #expect(spool.events(flow).filter { $0["event"] as? String == "linked" }.count == 8)
    }
}

@Suite("clawflow tasks set")
struct TasksSetTests {
    @Test("a status change prints the task and flow status and updates both records")
    func running() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice")
        let r = spool.run(["tasks", "set", t.task, "--status", "running", "--progress", "fetching"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(r.stdout == "Task \(t.task) is running; flow \(t.flow) is running.\n")
        let task = spool.taskRecord(t.flow, t.task)
        #expect(task["status"] as? String == "running")
        #expect(task["progressSummary"] as? String == "fetching")
        #expect(task["startedAt"] as? String != nil)
        let m = spool.manifest(t.flow)
        #expect(m["status"] as? String == "running")
        #expect(m["revision"] as? Int == 1)
    }

    @Test("--json prints the updated task record")
    func json() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: "running")
        let r = spool.run(["tasks", "set", t.task, "--status", "failed", "--error", "disk full", "--json"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(keysSortedEverywhere(r.stdout))
        let doc = jsonObject(r.stdout) ?? [:]
        #expect(doc["status"] as? String == "failed")
        #expect(doc["error"] as? String == "disk full")
        #expect(doc["endedAt"] as? String != nil)
        #expect(sameJSON(doc, spool.taskRecord(t.flow, t.task)))
    }

    @Test(
        "a mirrored flow follows its task's status",
        arguments: [
            ("queued", "queued"), ("running", "running"), ("succeeded", "succeeded"), ("failed", "failed"),
            ("timed_out", "failed"), ("cancelled", "cancelled"), ("lost", "lost"),
        ])
    func mirror(taskStatus: String, flowStatus: String) {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: taskStatus == "queued" ? "running" : "queued")
        #expect(spool.run(["tasks", "set", t.task, "--status", taskStatus]).status == 0)
        let m = spool.manifest(t.flow)
        #expect(m["status"] as? String == flowStatus)
        #expect(m["revision"] as? Int == 1, "one manifest change, one revision")
        let terminal = !["queued", "running"].contains(flowStatus)
        #expect((m["endedAt"] != nil) == terminal)
    }

    @Test("succeeded with --outcome blocked ends a mirrored flow blocked, with endedAt and blockedTaskId")
    func blocked() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: "running")
        let r = spool.run(["tasks", "set", t.task, "--status", "succeeded", "--outcome", "blocked", "--summary", "needs a login"])
        #expect(r.status == 0)
        #expect(r.stdout == "Task \(t.task) is succeeded; flow \(t.flow) is blocked.\n")
        let m = spool.manifest(t.flow)
        #expect(m["status"] as? String == "blocked")
        #expect(m["blockedTaskId"] as? String == t.task)
        #expect(m["blockedSummary"] as? String == "needs a login")
        #expect(m["endedAt"] as? String != nil, "a mirrored blocked flow gets endedAt (spec §3), so it is terminal")
        #expect(spool.taskRecord(t.flow, t.task)["terminalOutcome"] as? String == "blocked")
    }

    @Test("a mirrored flow that ended blocked is finished: cancel says it is already blocked")
    func blockedIsTerminal() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: "running")
        spool.value(["tasks", "set", t.task, "--status", "succeeded", "--outcome", "blocked"])
        let r = spool.run(["flows", "cancel", t.flow])
        #expect(r.status == 1)
        #expect(r.stderr == "clawflow: Flow is already blocked.\n")
        #expect(spool.manifest(t.flow)["status"] as? String == "blocked")
        #expect(lines(spool.value(["flows", "list"])).first == "1 flow: 0 active, 1 finished")
    }

    @Test("revision rises by exactly one per manifest change and not at all when the flow is unchanged")
    func revisions() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice")
        func revision() -> Int? { spool.manifest(t.flow)["revision"] as? Int }
        #expect(revision() == 0)
        spool.value(["tasks", "set", t.task, "--status", "running"])
        #expect(revision() == 1)
        let manifest = spool.text("flows/\(t.flow)/manifest.json")
        spool.value(["tasks", "set", t.task, "--status", "running", "--progress", "half way"])
        #expect(revision() == 1)
        #expect(spool.text("flows/\(t.flow)/manifest.json") == manifest, "the manifest was not rewritten")
        #expect(spool.taskRecord(t.flow, t.task)["progressSummary"] as? String == "half way")
        spool.value(["tasks", "set", t.task, "--status", "succeeded"])
        #expect(revision() == 2)
    }

    @Test(
        "precedence: only succeeded may become failed, timed_out or cancelled; other reports on a final task are ignored",
        arguments: ["succeeded", "failed", "timed_out", "cancelled", "lost"], ["queued", "running", "succeeded", "failed", "timed_out", "cancelled", "lost"])
    func precedence(from: String, to: String) {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: from)
        let applied = from == "succeeded" && ["failed", "timed_out", "cancelled"].contains(to)
        let eventsBefore = spool.events(t.flow).count
        let taskBefore = spool.text("flows/\(t.flow)/tasks/\(t.task).json")
        let r = spool.run(["tasks", "set", t.task, "--status", to])
        if applied {
            #expect(r.status == 0)
            #expect(spool.taskRecord(t.flow, t.task)["status"] as? String == to)
        } else {
            #expect(r.status == 1)
            #expect(r.stdout == "")
            #expect(r.stderr == "clawflow: Task \(t.task) is already \(from); the report was ignored and logged.\n")
            #expect(spool.text("flows/\(t.flow)/tasks/\(t.task).json") == taskBefore)
            let events = spool.events(t.flow)
            #expect(events.count == eventsBefore + 1)
            #expect(events.last?["event"] as? String == "ignored")
            #expect(events.last?["taskId"] as? String == t.task)
            #expect(events.last?["status"] as? String == to)
        }
    }

    @Test("an ignored report under --json is an already_terminal error carrying the task")
    func ignoredJSON() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: "failed")
        let r = spool.run(["tasks", "set", t.task, "--status", "succeeded", "--json"])
        #expect(r.status == 1)
        #expect(r.stderr == "")
        let doc = jsonObject(r.stdout)
        #expect(errorField(doc, "code") == "already_terminal")
        #expect(((doc?["error"] as? [String: Any])?["current"] as? [String: Any])?["status"] as? String == "failed")
    }

    @Test("succeeded then failed is applied to the task and its mirrored flow follows")
    func lateFailure() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: "running")
        spool.value(["tasks", "set", t.task, "--status", "succeeded"])
        let r = spool.run(["tasks", "set", t.task, "--status", "failed", "--error", "delivery failed"])
        #expect(r.status == 0)
        #expect(spool.taskRecord(t.flow, t.task)["status"] as? String == "failed")
        #expect(spool.manifest(t.flow)["status"] as? String == "failed", "spec §3: mirrored flows follow their task, failed→failed")
    }

    @Test("tasks are found by run id and by a unique prefix")
    func lookups() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", ["--run-id", "run-42"])
        #expect(spool.value(["tasks", "set", "run-42", "--status", "running"]).contains("Task \(t.task) is running"))
        spool.value(["tasks", "set", String(t.task.prefix(13)), "--status", "running", "--progress", "p"])
        #expect(spool.taskRecord(t.flow, t.task)["progressSummary"] as? String == "p")
    }

    @Test("an unknown task is not found (exit 1)")
    func notFound() {
        let spool = TemporarySpool()
        spool.addTask(owner: "alice")
        let r = spool.run(["tasks", "set", "nope", "--status", "running"])
        #expect(r.status == 1)
        #expect(r.stdout == "")
        #expect(r.stderr == "clawflow: " + taskNotFound("nope") + "\n")
        #expect(errorField(jsonObject(spool.run(["tasks", "set", "nope", "--status", "running", "--json"]).stdout), "code") == "not_found")
    }

    @Test("an outcome other than blocked is a usage error")
    func badOutcome() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice")
        let r = spool.run(["tasks", "set", t.task, "--status", "succeeded", "--outcome", "stuck"])
        #expect(r.status == 64)
        #expect(r.stderr.contains("blocked"))
        #expect(spool.taskRecord(t.flow, t.task)["status"] as? String == "queued")
    }
}

@Suite("clawflow tasks list")
struct TasksListTests {
    @Test("an empty spool says No tasks.")
    func empty() {
        let spool = TemporarySpool()
        spool.createFlow(owner: "alice")
        let r = spool.run(["tasks", "list"])
        #expect(r.status == 0)
        #expect(r.stdout == "No tasks.\n")
        #expect(r.stderr == "")
    }

    @Test("the table lists tasks newest first with flow, runtime, status, owner and label; ids resolve")
    func table() {
        let spool = TemporarySpool()
        let a = spool.addTask(owner: "alice", ["--label", "first"])
        let b = spool.addTask(owner: "bob", runtime: "acp", status: "running", ["--label", "second"])
        let r = spool.run(["tasks", "list"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        let out = lines(r.stdout)
        #expect(out.count == 3)
        guard out.count == 3 else { return }
        #expect(out[0].split(separator: " ") == ["TASK", "FLOW", "RUNTIME", "STATUS", "OWNER", "LABEL"])
        let newest = out[1].split(separator: " ").map(String.init)
        let oldest = out[2].split(separator: " ").map(String.init)
        #expect(newest == [newest[0], b.flow, "acp", "running", "bob", "second"])
        #expect(oldest == [oldest[0], a.flow, "cron", "queued", "alice", "first"])
        #expect(newest[0].count >= 13 && b.task.hasPrefix(newest[0]))
        #expect(spool.json(["tasks", "show", newest[0]])["taskId"] as? String == b.task)
        #expect(spool.json(["tasks", "show", oldest[0]])["taskId"] as? String == a.task)
    }

    @Test("--json prints count and tasks, keys sorted; --status filters")
    func json() {
        let spool = TemporarySpool()
        let a = spool.addTask(owner: "alice", status: "running")
        spool.addTask(owner: "bob")
        let r = spool.run(["tasks", "list", "--json"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(topLevelKeys(r.stdout) == ["count", "tasks"])
        #expect(keysSortedEverywhere(r.stdout))
        #expect(jsonObject(r.stdout)?["count"] as? Int == 2)
        let running = spool.json(["tasks", "list", "--status", "running"])
        #expect(running["count"] as? Int == 1)
        #expect((running["tasks"] as? [[String: Any]])?.first?["taskId"] as? String == a.task)
        #expect(lines(spool.value(["tasks", "list", "--status", "lost"])) == ["No tasks."])
    }

    @Test("a task with a pending cancel is starred")
    func star() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: "running")
        #expect(spool.run(["tasks", "cancel", t.task]).status == 1)
        #expect(lines(spool.value(["tasks", "list"])).last?.contains(" running* ") == true)
    }
}

@Suite("clawflow tasks show")
struct TasksShowTests {
    @Test("text output shows the header and one line per field")
    func text() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: "running", ["--label", "crawl", "--run-id", "r-1"])
        let r = spool.run(["tasks", "show", t.task])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        let out = lines(r.stdout)
        #expect(out.first == "Task \(t.task)  running")
        #expect(out.contains("  parentFlowId:     \(t.flow)"))
        #expect(out.contains("  ownerKey:         alice"))
        #expect(out.contains("  runtime:          cron"))
        #expect(out.contains("  label:            crawl"))
        #expect(out.contains("  runId:            r-1"))
        #expect(out.contains { $0.hasPrefix("  startedAt:        ") })
        #expect(!out.contains { $0.hasPrefix("  endedAt:") })
    }

    @Test("text output keeps its values in one column, also after a key longer than the usual ones")
    func aligned() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: "running", ["--run-id", "r-1"])
        spool.run(["tasks", "cancel", t.task])
        let fields = lines(spool.run(["tasks", "show", t.task]).stdout).dropFirst()
        #expect(fields.contains { $0.hasPrefix("  cancelRequestedAt:  ") }, "\(fields)")
        let columns = Set(
            fields.map { line in
                let afterKey = line.dropFirst(2).drop { $0 != " " }
                return line.count - afterKey.drop { $0 == " " }.count
            })
        #expect(columns.count == 1, "every value starts in the same column: \(fields)")
    }

    @Test("--json prints exactly the task record")
    func json() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", ["--label", "crawl"])
        let r = spool.run(["tasks", "show", t.task, "--json"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(keysSortedEverywhere(r.stdout))
        #expect(r.stdout == spool.text("flows/\(t.flow)/tasks/\(t.task).json"), "same bytes as the record file")
    }

    @Test("tasks added with --run-id are found by it with show and set")
    func runId() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", ["--run-id", "R"])
        #expect(spool.json(["tasks", "show", "R"])["taskId"] as? String == t.task)
        spool.value(["tasks", "set", "R", "--status", "running"])
        #expect(spool.json(["tasks", "show", "R"])["status"] as? String == "running")
    }

    @Test("a run id shared by several tasks picks the newest active one, else the newest")
    func runIdPick() {
        let spool = TemporarySpool()
        let active = spool.addTask(owner: "a", status: "running", ["--run-id", "R"])
        let finished = spool.addTask(owner: "b", status: "succeeded", ["--run-id", "R"])
        #expect(spool.json(["tasks", "show", "R"])["taskId"] as? String == active.task)
        spool.value(["tasks", "set", active.task, "--status", "failed"])
        #expect(spool.json(["tasks", "show", "R"])["taskId"] as? String == finished.task)
    }

    @Test("a prefix shared by two tasks is ambiguous; an unknown task is not found")
    func ambiguousAndMissing() {
        let spool = TemporarySpool()
        let (a, b) = spool.twoTasksSharingPrefix()
        let r = spool.run(["tasks", "show", String(a.prefix(8)), "--json"])
        #expect(r.status == 1)
        let doc = jsonObject(r.stdout)
        #expect(errorField(doc, "code") == "ambiguous")
        #expect(errorField(doc, "message")?.contains(a) == true && errorField(doc, "message")?.contains(b) == true)
        let missing = spool.run(["tasks", "show", "no-such-task"])
        #expect(missing.status == 1)
        #expect(missing.stdout == "")
        #expect(missing.stderr == "clawflow: " + taskNotFound("no-such-task") + "\n")
    }
}

@Suite("clawflow tasks cancel")
struct TasksCancelTests {
    @Test("an active external task gets cancelRequestedAt and the command exits 1 until its runner answers")
    func external() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", runtime: "acp", status: "running", ["--run-id", "run-9"])
        let r = spool.run(["tasks", "cancel", "run-9"])
        #expect(r.status == 1)
        #expect(r.stdout == "Cancel requested for task \(t.task) (acp); it stays running until its runner answers.\n")
        #expect(r.stderr == "clawflow: Task \(t.task) is still active; its runner has been asked to stop.\n")
        let task = spool.taskRecord(t.flow, t.task)
        #expect(task["status"] as? String == "running")
        #expect(task["cancelRequestedAt"] as? String != nil)
        #expect(spool.events(t.flow).contains { $0["event"] as? String == "cancel" && $0["taskId"] as? String == t.task })
        let j = spool.run(["tasks", "cancel", t.task, "--json"])
        #expect(j.status == 1)
        #expect(errorField(jsonObject(j.stdout), "code") == "still_active")
        // The runner answers.
        #expect(spool.value(["tasks", "set", "run-9", "--status", "cancelled"]) == "Task \(t.task) is cancelled; flow \(t.flow) is cancelled.")
    }

    @Test("a finished task is refused with already_terminal")
    func finished() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: "succeeded")
        let r = spool.run(["tasks", "cancel", t.task])
        #expect(r.status == 1)
        #expect(r.stdout == "")
        #expect(r.stderr == "clawflow: Task is already succeeded.\n")
        #expect(errorField(jsonObject(spool.run(["tasks", "cancel", t.task, "--json"]).stdout), "code") == "already_terminal")
        #expect(spool.taskRecord(t.flow, t.task)["cancelRequestedAt"] == nil)
    }

    @Test("an unknown task is not found")
    func notFound() {
        let spool = TemporarySpool()
        spool.addTask(owner: "alice")
        let r = spool.run(["tasks", "cancel", "ghost"])
        #expect(r.status == 1)
        #expect(r.stderr == "clawflow: " + taskNotFound("ghost") + "\n")
    }
}
