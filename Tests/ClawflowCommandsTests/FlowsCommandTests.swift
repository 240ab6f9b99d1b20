import ClawflowTestSupport
import Foundation
import Testing

@Suite("clawflow flows list")
struct FlowsListTests {
    @Test("an initialised but empty spool prints only the zero summary line")
    func emptySpool() {
        let spool = TemporarySpool()
        spool.value(["init"])
        let r = spool.run(["flows", "list"])
        #expect(r.status == 0)
        #expect(r.stdout == "0 flows: 0 active, 0 finished\n")
        #expect(r.stderr == "")
    }

    @Test("the table lists flows newest first with mode, status, revision, controller, owner, queue, task counts, duration, exit status and goal")
    func table() {
        let spool = TemporarySpool()
        let managed = spool.createFlow(owner: "alice", goal: "nightly report", controller: "scheduler")
        let mirrored = spool.addTask(owner: "bob", status: "running", ["--label", "fetch mail"])
        let r = spool.run(["flows", "list"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        let out = lines(r.stdout)
        #expect(out.count == 4)
        guard out.count == 4 else { return }
        #expect(out[0] == "2 flows: 2 active (1 queued, 1 running), 0 finished")
        #expect(
            out[1].split(separator: " ", omittingEmptySubsequences: true) == [
                "FLOW", "MODE", "STATUS", "REV", "CONTROLLER", "OWNER", "QUEUE", "TASKS", "DURATION", "EXIT", "GOAL",
            ])
        let newest = out[2].split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        let oldest = out[3].split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        #expect(mirrored.flow.hasPrefix(newest[0]))
        #expect(Array(newest[1...4]) == ["mirrored", "running", "0", "-"], "created running: revision 0")
        #expect(out[2].contains("1 active/1 total"))
        #expect(out[2].hasSuffix("fetch mail"))
        #expect(managed.hasPrefix(oldest[0]))
        #expect(Array(oldest[1...4]) == ["managed", "queued", "0", "scheduler"])
        #expect(out[3].contains("0 active/0 total"))
        #expect(out[3].hasSuffix("nightly report"))
    }

    @Test("every id in the table is at least 13 characters and resolves back to its flow")
    func shortIdsResolve() {
        let spool = TemporarySpool()
        let ids = (0..<4).map { spool.createFlow(owner: "owner-\($0)") }
        let rows = lines(spool.value(["flows", "list"])).dropFirst(2)
        #expect(rows.count == 4)
        for (row, id) in zip(rows, ids.reversed()) {
            let shown = String(row.prefix { $0 != " " })
            #expect(shown.count >= 13)
            #expect(id.hasPrefix(shown))
            #expect(spool.json(["flows", "show", shown])["flowId"] as? String == id)
        }
    }

    @Test("--json prints count, status and flows (each with tasks and taskSummary), keys sorted")
    func jsonShape() {
        let spool = TemporarySpool()
        spool.createFlow(owner: "alice")
        let t = spool.addTask(owner: "bob", status: "failed")
        let r = spool.run(["flows", "list", "--json"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(topLevelKeys(r.stdout) == ["count", "flows", "status"])
        #expect(keysSortedEverywhere(r.stdout))
        #expect(r.stdout.hasSuffix("}\n"))
        let doc = jsonObject(r.stdout)
        #expect(doc?["count"] as? Int == 2)
        let status = doc?["status"] as? [String: Any]
        #expect(
            keys(status) == [
                "active", "blocked", "cancelRequested", "cancelled", "failed", "lost", "queued", "running", "succeeded", "terminal", "total", "waiting",
            ])
        #expect(status?["total"] as? Int == 2)
        #expect(status?["active"] as? Int == 1)
        #expect(status?["terminal"] as? Int == 1)
        #expect(status?["failed"] as? Int == 1)
        #expect(status?["queued"] as? Int == 1)
        let flows = doc?["flows"] as? [[String: Any]] ?? []
        #expect(flows.count == 2)
        #expect(flows.first?["flowId"] as? String == t.flow, "newest first")
        for flow in flows {
            #expect(flow["tasks"] is [Any])
            #expect(flow["stateJson"] is NSNull)
            #expect(flow["schema"] as? Int == 1)
            #expect(keys(flow["taskSummary"] as? [String: Any]) == ["active", "byStatus", "failures", "terminal", "total"])
        }
        let summary = flows.first?["taskSummary"] as? [String: Any]
        #expect(summary?["total"] as? Int == 1)
        #expect(summary?["failures"] as? Int == 1)
        #expect(summary?["terminal"] as? Int == 1)
        #expect((summary?["byStatus"] as? [String: Any])?["failed"] as? Int == 1)
        #expect(((flows.first?["tasks"] as? [[String: Any]])?.first)?["taskId"] as? String == t.task)
    }

    @Test("--status keeps only flows with that status")
    func statusFilter() {
        let spool = TemporarySpool()
        spool.createFlow(owner: "alice")
        let running = spool.addTask(owner: "bob", status: "running")
        let doc = spool.json(["flows", "list", "--status", "running"])
        #expect(doc["count"] as? Int == 1)
        #expect((doc["flows"] as? [[String: Any]])?.map { $0["flowId"] as? String } == [running.flow])
        let text = spool.run(["flows", "list", "--status", "succeeded"])
        #expect(text.status == 0)
        #expect(text.stdout == "0 flows: 0 active, 0 finished\n")
    }

    @Test("--owner keeps only that owner's flows, and the key is trimmed")
    func ownerFilter() {
        let spool = TemporarySpool()
        let a = spool.createFlow(owner: "team/a b")
        spool.createFlow(owner: "other")
        let doc = spool.json(["flows", "list", "--owner", "  team/a b  "])
        #expect(doc["count"] as? Int == 1)
        #expect((doc["flows"] as? [[String: Any]])?.first?["flowId"] as? String == a)
    }

    @Test("a flow with a pending cancel is starred and counted in the summary line")
    func cancelRequestedStar() {
        let spool = TemporarySpool()
        spool.addTask(owner: "alice", status: "running")
        #expect(spool.run(["flows", "cancel", "alice"]).status == 1)
        let out = lines(spool.value(["flows", "list"]))
        #expect(out.first == "1 flow: 1 active (1 running), 1 cancel requested (*), 0 finished")
        #expect(out.last?.contains(" running* ") == true)
        #expect((spool.json(["flows", "list"])["status"] as? [String: Any])?["cancelRequested"] as? Int == 1)
    }

    @Test("finished flows are counted as finished, not active")
    func finishedCount() {
        let spool = TemporarySpool()
        spool.addTask(owner: "a", status: "succeeded")
        spool.addTask(owner: "b", status: "cancelled")
        #expect(lines(spool.value(["flows", "list"])).first == "2 flows: 0 active, 2 finished")
    }
}

@Suite("clawflow flows show")
struct FlowsShowTests {
    @Test("text output shows the header, the flow's fields and its task table")
    func text() {
        let spool = TemporarySpool()
        let flow = spool.createFlow(owner: "alice", goal: "weekly digest", controller: "digest-bot", ["--step", "collect"])
        let task = spool.linkTask(to: flow, status: "running", ["--label", "collect links"])
        spool.value(["tasks", "set", task, "--status", "running", "--progress", "12 of 40"])
        let r = spool.run(["flows", "show", flow])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        let out = lines(r.stdout)
        #expect(out.first == "Flow \(flow)  managed  queued  rev 0")
        #expect(out.contains("  Owner:            alice"))
        #expect(out.contains("  Goal:             weekly digest"))
        #expect(out.contains("  Controller:       digest-bot"))
        #expect(out.contains("  Current step:     collect"))
        #expect(out.contains { $0.hasPrefix("  Created:          ") })
        #expect(!out.contains { $0.hasPrefix("  Ended:") })
        #expect(out.contains("Tasks (1 active / 1 total)"))
        #expect(out.contains { $0.hasPrefix("TASK ") && $0.contains("RUNTIME") && $0.contains("SUMMARY") })
        let row = out.last ?? ""
        #expect(row.hasPrefix(task))
        #expect(row.contains(" cron "))
        #expect(row.contains(" running "))
        #expect(row.contains("collect links"))
        #expect(row.hasSuffix("12 of 40"))
    }

    @Test("a flow without tasks says (none); failures are counted in the heading")
    func noneAndFailures() {
        let spool = TemporarySpool()
        let empty = spool.createFlow(owner: "alice")
        #expect(lines(spool.value(["flows", "show", empty])).suffix(2) == ["Tasks (0 active / 0 total)", "  (none)"])
        let failed = spool.addTask(owner: "bob", status: "failed")
        let out = lines(spool.value(["flows", "show", failed.flow]))
        #expect(out.first == "Flow \(failed.flow)  task_mirrored  failed  rev 0")
        #expect(out.contains("Tasks (0 active / 1 total, 1 failed)"))
        #expect(out.contains { $0.hasPrefix("  Ended:            ") })
    }

    @Test("--json prints the flow record plus tasks and taskSummary, keys sorted")
    func jsonShape() {
        let spool = TemporarySpool()
        let flow = spool.createFlow(owner: "alice", ["--state-json", #"{"b":1,"a":[true,null]}"#])
        let t1 = spool.linkTask(to: flow, status: "running")
        let t2 = spool.linkTask(to: flow, status: "succeeded")
        let r = spool.run(["flows", "show", flow, "--json"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(keysSortedEverywhere(r.stdout))
        #expect(topLevelKeys(r.stdout) == topLevelKeys(r.stdout).sorted())
        let doc = jsonObject(r.stdout) ?? [:]
        let manifest = spool.manifest(flow)
        for (key, value) in manifest {
            #expect(sameJSON(value, doc[key]), "\(key) differs from the manifest")
        }
        #expect(Set(doc.keys) == Set(manifest.keys).union(["tasks", "taskSummary"]))
        #expect((doc["tasks"] as? [[String: Any]])?.map { $0["taskId"] as? String } == [t1, t2], "oldest first")
        let summary = doc["taskSummary"] as? [String: Any]
        #expect(summary?["total"] as? Int == 2)
        #expect(summary?["active"] as? Int == 1)
        #expect(summary?["terminal"] as? Int == 1)
        #expect(summary?["failures"] as? Int == 0)
        #expect(sameJSON(summary?["byStatus"], ["running": 1, "succeeded": 1] as [String: Any]))
        #expect((doc["stateJson"] as? [String: Any])?["b"] as? Int == 1)
    }

    @Test("a flow is found by its exact id, its owner key (trimmed) and a unique prefix of 8+ characters")
    func lookups() {
        let spool = TemporarySpool()
        let flow = spool.createFlow(owner: "team/a b")
        for token in [flow, "team/a b", "  team/a b  ", String(flow.prefix(8)), String(flow.prefix(13)), " \(flow) "] {
            let r = spool.run(["flows", "show", token, "--json"])
            #expect(r.status == 0, "lookup \(token)")
            #expect(jsonObject(r.stdout)?["flowId"] as? String == flow, "lookup \(token)")
        }
    }

    @Test("a prefix shorter than 8 characters is not a lookup")
    func shortPrefix() {
        let spool = TemporarySpool()
        let flow = spool.createFlow(owner: "alice")
        let token = String(flow.prefix(7))
        let r = spool.run(["flows", "show", token])
        #expect(r.status == 1)
        #expect(r.stdout == "")
        #expect(r.stderr == "clawflow: " + flowNotFound(token) + "\n")
    }

    @Test("an unknown lookup exits 1 with the not-found message, as text and as JSON")
    func notFound() {
        let spool = TemporarySpool()
        spool.createFlow(owner: "alice")
        let r = spool.run(["flows", "show", "  nobody  "])
        #expect(r.status == 1)
        #expect(r.stdout == "")
        #expect(r.stderr == "clawflow: " + flowNotFound("nobody") + "\n")
        let j = spool.run(["flows", "show", "nobody", "--json"])
        #expect(j.status == 1)
        #expect(j.stderr == "")
        let doc = jsonObject(j.stdout)
        #expect(doc?["ok"] as? Bool == false)
        #expect(errorField(doc, "code") == "not_found")
        #expect(errorField(doc, "message") == flowNotFound("nobody"))
    }

    @Test("an empty or blank lookup is not found")
    func blank() {
        let spool = TemporarySpool()
        spool.createFlow(owner: "alice")
        for token in ["", "   "] {
            let r = spool.run(["flows", "show", token, "--json"])
            #expect(r.status == 1)
            #expect(errorField(jsonObject(r.stdout), "code") == "not_found")
        }
    }

    @Test("a prefix shared by two flows is ambiguous: exit 1, code ambiguous, both ids named")
    func ambiguous() {
        let spool = TemporarySpool()
        let (a, b) = spool.twoFlowsSharingPrefix()
        let token = String(a.prefix(8))
        let r = spool.run(["flows", "show", token])
        #expect(r.status == 1)
        #expect(r.stdout == "")
        #expect(r.stderr.contains(a) && r.stderr.contains(b))
        let j = spool.run(["flows", "show", token, "--json"])
        #expect(j.status == 1)
        let doc = jsonObject(j.stdout)
        #expect(errorField(doc, "code") == "ambiguous")
        #expect(errorField(doc, "message")?.contains(a) == true)
        #expect(errorField(doc, "message")?.contains(b) == true)
        // One more character than they share resolves.
        var n = 8
        while a.prefix(n) == b.prefix(n) { n += 1 }
        #expect(spool.json(["flows", "show", String(a.prefix(max(n, 8)))])["flowId"] as? String == a)
    }

    @Test("an owner key is tried before an id prefix")
    func ownerBeforePrefix() {
        let spool = TemporarySpool()
        let first = spool.createFlow(owner: "first")
        let key = String(first.prefix(8))
        let second = spool.createFlow(owner: key)
        #expect(spool.json(["flows", "show", key])["flowId"] as? String == second)
    }

    @Test("an owner key resolves to its newest unfinished flow even when a newer one has finished")
    func ownerPrefersLive() {
        let spool = TemporarySpool()
        let live = spool.createFlow(owner: "session-1")
        let newer = spool.addTask(owner: "session-1", status: "running")
        #expect(spool.json(["flows", "show", "session-1"])["flowId"] as? String == newer.flow, "newest live flow")
        #expect(spool.ownerLink("session-1") == "../flows/\(newer.flow)")
        spool.value(["tasks", "set", newer.task, "--status", "succeeded"])
        #expect(spool.json(["flows", "show", "session-1"])["flowId"] as? String == live, "the older live flow wins over the newer finished one")
        #expect(spool.ownerLink("session-1") == "../flows/\(live)")
        let newest = spool.addTask(owner: "session-1", status: "failed")
        #expect(spool.json(["flows", "show", "session-1"])["flowId"] as? String == live, "a new finished flow does not take over")
        // When every flow of the owner has finished, the newest wins.
        spool.value(["flows", "cancel", live])
        #expect(spool.json(["flows", "show", "session-1"])["flowId"] as? String == newest.flow)
        #expect(spool.ownerLink("session-1") == "../flows/\(newest.flow)")
    }

    @Test("an exact flow id wins over an owner key with the same text")
    func exactIdFirst() {
        let spool = TemporarySpool()
        let target = spool.createFlow(owner: "alice")
        let impostor = spool.createFlow(owner: target)
        #expect(spool.json(["flows", "show", target])["flowId"] as? String == target)
        #expect(spool.ownerLink(target) == "../flows/\(impostor)")
    }
}

@Suite("owner keys and owners/ links")
struct OwnerKeyTests {
    @Test(
        "owner keys with slashes, spaces, unicode or a leading dot or dash work and get percent-encoded link names",
        arguments: [
            ("team/a b", "team%2Fa%20b"),
            ("ключ-é", "%D0%BA%D0%BB%D1%8E%D1%87-%C3%A9"),
            (".hidden", "%2Ehidden"),
            ("-dash", "%2Ddash"),
            ("a:b@c+d_e.f-G9", "a:b@c+d_e.f-G9"),
            ("50%", "50%25"),
        ])
    func encoded(key: String, name: String) {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: key)
        #expect(spool.ownerNames() == [name])
        #expect(spool.ownerLink(name) == "../flows/\(t.flow)")
        #expect(spool.manifest(t.flow)["ownerKey"] as? String == key)
        let r = spool.run(["flows", "show", "--json", "--", key])
        #expect(r.status == 0)
        #expect(jsonObject(r.stdout)?["flowId"] as? String == t.flow)
    }

    @Test("surrounding whitespace of an owner key is trimmed before it is stored")
    func trimmed() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "  \tsession-9 ")
        #expect(spool.manifest(t.flow)["ownerKey"] as? String == "session-9")
        #expect(spool.taskRecord(t.flow, t.task)["ownerKey"] as? String == "session-9")
        #expect(spool.ownerNames() == ["session-9"])
    }

    @Test("an owner key whose encoded name is over 200 bytes gets owners/sha256-<hex of the key>")
    func hashedName() {
        let spool = TemporarySpool()
        let long = String(repeating: "x", count: 201)
        let t = spool.addTask(owner: long)
        let name = "sha256-84a0678c90937f5dcf9994d5866668da6b995109c8ad845410559b48a4ecafed"
        #expect(spool.ownerNames() == [name])
        #expect(spool.ownerLink(name) == "../flows/\(t.flow)")
        #expect(spool.manifest(t.flow)["ownerKey"] as? String == long, "the manifest keeps the full key")
        #expect(spool.json(["flows", "show", long])["flowId"] as? String == t.flow)
    }

    @Test("an owner key whose encoded name is exactly 200 bytes keeps its plain name")
    func twoHundred() {
        let spool = TemporarySpool()
        let key = String(repeating: "y", count: 200)
        spool.addTask(owner: key)
        #expect(spool.ownerNames() == [key])
    }

    @Test("a unicode key whose encoding passes 200 bytes is hashed too")
    func hashedUnicode() {
        let spool = TemporarySpool()
        let key = String(repeating: "é", count: 40)  // 80 bytes, 240 encoded
        let t = spool.addTask(owner: key)
        let names = spool.ownerNames()
        #expect(names.count == 1)
        #expect(names.first?.hasPrefix("sha256-") == true)
        #expect(names.first?.count == 7 + 64)
        #expect(spool.json(["flows", "show", key])["flowId"] as? String == t.flow)
    }
}

@Suite("clawflow flows cancel")
struct FlowsCancelTests {
    @Test("cancelling a flow with no active task cancels it at once, in the same write as the request")
    func immediate() {
        let spool = TemporarySpool()
        let flow = spool.createFlow(owner: "alice")
        let r = spool.run(["flows", "cancel", "alice"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(r.stdout == "Cancelled \(flow) (managed) with status cancelled.\n")
        let m = spool.manifest(flow)
        #expect(m["status"] as? String == "cancelled")
        #expect(m["revision"] as? Int == 1)
        #expect(m["cancelRequestedAt"] as? String != nil)
        #expect(m["endedAt"] as? String == m["cancelRequestedAt"] as? String)
    }

    @Test("--json prints the cancelled flow with its tasks and taskSummary")
    func json() {
        let spool = TemporarySpool()
        let flow = spool.createFlow(owner: "alice")
        let task = spool.linkTask(to: flow, status: "succeeded")
        let r = spool.run(["flows", "cancel", flow, "--json"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(keysSortedEverywhere(r.stdout))
        let doc = jsonObject(r.stdout)
        #expect(doc?["flowId"] as? String == flow)
        #expect(doc?["status"] as? String == "cancelled")
        #expect((doc?["tasks"] as? [[String: Any]])?.first?["taskId"] as? String == task)
        #expect((doc?["taskSummary"] as? [String: Any])?["total"] as? Int == 1)
    }

    @Test(
        "a finished flow is refused: exit 1, \"Flow is already <status>.\", nothing written",
        arguments: ["succeeded", "failed", "cancelled", "lost", "timed_out"])
    func alreadyTerminal(taskStatus: String) {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: taskStatus)
        let flowStatus = taskStatus == "timed_out" ? "failed" : taskStatus
        let before = spool.text("flows/\(t.flow)/manifest.json")
        let r = spool.run(["flows", "cancel", "alice"])
        #expect(r.status == 1)
        #expect(r.stdout == "")
        #expect(r.stderr == "clawflow: Flow is already \(flowStatus).\n")
        let j = spool.run(["flows", "cancel", "alice", "--json"])
        #expect(j.status == 1)
        #expect(errorField(jsonObject(j.stdout), "code") == "already_terminal")
        #expect(errorField(jsonObject(j.stdout), "message") == "Flow is already \(flowStatus).")
        #expect(spool.text("flows/\(t.flow)/manifest.json") == before)
    }

    @Test(
        "with an external task still active it records the request, exits 1, and the flow ends once the task settles",
        arguments: ["failed", "succeeded", "timed_out", "cancelled", "lost"])
    func stillActive(settle: String) {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: "running")
        let r = spool.run(["flows", "cancel", "alice"])
        #expect(r.status == 1)
        #expect(r.stderr == "clawflow: One or more child tasks are still active.\n")
        #expect(r.stdout == "Cancel requested for \(t.flow) (task_mirrored); waiting for 1 active task(s): \(t.task).\n")
        let m = spool.manifest(t.flow)
        #expect(m["status"] as? String == "running")
        #expect(m["cancelRequestedAt"] as? String != nil)
        #expect(m["endedAt"] == nil)
        #expect(m["revision"] as? Int == 1)
        #expect(spool.taskRecord(t.flow, t.task)["cancelRequestedAt"] as? String != nil)
        #expect(spool.events(t.flow).contains { $0["event"] as? String == "cancel" && $0["taskId"] as? String == t.task })
        #expect(spool.events(t.flow).contains { $0["event"] as? String == "cancel" && $0["taskId"] == nil })

        let set = spool.run(["tasks", "set", t.task, "--status", settle])
        #expect(set.status == 0)
        #expect(set.stdout == "Task \(t.task) is \(settle); flow \(t.flow) is cancelled.\n")
        let after = spool.manifest(t.flow)
        #expect(after["status"] as? String == "cancelled")
        #expect(after["endedAt"] as? String != nil)
        #expect(after["revision"] as? Int == 2)
    }

    @Test("--json still-active error carries code still_active and the flow as current")
    func stillActiveJSON() {
        let spool = TemporarySpool()
        let flow = spool.createFlow(owner: "alice")
        let task = spool.linkTask(to: flow, status: "running")
        spool.linkTask(to: flow, status: "succeeded")
        let r = spool.run(["flows", "cancel", flow, "--json"])
        #expect(r.status == 1)
        #expect(r.stderr == "")
        let doc = jsonObject(r.stdout)
        #expect(doc?["ok"] as? Bool == false)
        #expect(errorField(doc, "code") == "still_active")
        #expect(errorField(doc, "message") == "One or more child tasks are still active.")
        let current = (doc?["error"] as? [String: Any])?["current"] as? [String: Any]
        #expect(current?["flowId"] as? String == flow)
        #expect(current?["cancelRequestedAt"] as? String != nil)
        #expect((current?["taskSummary"] as? [String: Any])?["active"] as? Int == 1)
        #expect(spool.taskRecord(flow, task)["cancelRequestedAt"] as? String != nil)
    }

    @Test("cancelling again while waiting changes nothing and still exits 1")
    func repeatWhileWaiting() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: "queued")
        #expect(spool.run(["flows", "cancel", "alice"]).status == 1)
        let manifest = spool.text("flows/\(t.flow)/manifest.json")
        let task = spool.text("flows/\(t.flow)/tasks/\(t.task).json")
        let again = spool.run(["flows", "cancel", "alice"])
        #expect(again.status == 1)
        #expect(again.stderr == "clawflow: One or more child tasks are still active.\n")
        #expect(spool.text("flows/\(t.flow)/manifest.json") == manifest)
        #expect(spool.text("flows/\(t.flow)/tasks/\(t.task).json") == task)
    }

    @Test("an unknown flow is not found (exit 1)")
    func notFound() {
        let spool = TemporarySpool()
        spool.createFlow(owner: "alice")
        let r = spool.run(["flows", "cancel", "bob"])
        #expect(r.status == 1)
        #expect(r.stderr == "clawflow: " + flowNotFound("bob") + "\n")
        #expect(errorField(jsonObject(spool.run(["flows", "cancel", "bob", "--json"]).stdout), "code") == "not_found")
    }

    @Test(
        "--grace takes seconds or s/m/h/d durations and refuses anything else with exit 64",
        arguments: [("10", 0), ("30s", 0), ("1h30m", 0), ("7d", 0), ("5x", 64), ("-3", 64), ("m", 64), ("30m1h", 64)])
    func grace(value: String, status: Int32) {
        let spool = TemporarySpool()
        spool.createFlow(owner: "alice")
        let r = spool.run(["flows", "cancel", "alice", "--grace=\(value)"])
        #expect(r.status == status, "--grace \(value): \(r.stderr)")
        if status == 64 {
            #expect(r.stderr.contains("Invalid duration"))
            #expect(spool.json(["flows", "show", "alice"])["status"] as? String == "queued", "nothing was cancelled")
        }
    }
}

@Suite("clawflow flows create")
struct FlowsCreateTests {
    @Test("prints the new id and writes a queued managed manifest at revision 0")
    func basic() {
        let spool = TemporarySpool()
        let r = spool.run(["flows", "create", "--owner", "alice", "--goal", "nightly report", "--controller", "sched"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        let id = r.stdout.trimmingCharacters(in: .newlines)
        #expect(r.stdout == id + "\n")
        #expect(isUUIDv7(id))
        #expect(spool.flowDirectories() == [id])
        let m = spool.manifest(id)
        #expect(m["flowId"] as? String == id)
        #expect(m["syncMode"] as? String == "managed")
        #expect(m["status"] as? String == "queued")
        #expect(m["revision"] as? Int == 0)
        #expect(m["controllerId"] as? String == "sched")
        #expect(m["goal"] as? String == "nightly report")
        #expect(m["ownerKey"] as? String == "alice")
        #expect(m["schema"] as? Int == 1)
        #expect(m["stateJson"] is NSNull)
        #expect(m["waitJson"] is NSNull)
        #expect(m["createdAt"] as? String == m["updatedAt"] as? String)
        #expect((m["createdAt"] as? String)?.wholeMatch(of: #/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/#) != nil)
        #expect(spool.events(id).first?["event"] as? String == "created")
        #expect(spool.ownerLink("alice") == "../flows/\(id)")
    }

    @Test("the manifest file is pretty-printed JSON with sorted keys and a final newline")
    func fileFormat() {
        let spool = TemporarySpool()
        let id = spool.createFlow(owner: "alice")
        let text = spool.text("flows/\(id)/manifest.json") ?? ""
        #expect(text.hasPrefix("{\n  \""))
        #expect(text.hasSuffix("}\n"))
        #expect(topLevelKeys(text) == topLevelKeys(text).sorted())
        #expect(topLevelKeys(text).count >= 10)
    }

    @Test("--running, --step and --state-json set status, currentStep and stateJson; --json prints the flow")
    func options() {
        let spool = TemporarySpool()
        let r = spool.run([
            "flows", "create", "--owner", "alice", "--goal", "g", "--controller", "c", "--running",
            "--step", "collect", "--state-json", #"{"cursor": 41, "list": [1, "two"]}"#, "--json",
        ])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(keysSortedEverywhere(r.stdout))
        let doc = jsonObject(r.stdout)
        #expect(doc?["status"] as? String == "running")
        #expect(doc?["currentStep"] as? String == "collect")
        #expect((doc?["stateJson"] as? [String: Any])?["cursor"] as? Int == 41)
        #expect((doc?["tasks"] as? [Any])?.isEmpty == true)
        #expect((doc?["taskSummary"] as? [String: Any])?["total"] as? Int == 0)
        let id = doc?["flowId"] as? String ?? ""
        #expect(((spool.manifest(id)["stateJson"] as? [String: Any])?["list"] as? [Any])?.count == 2)
    }

    @Test("--state-json null stores an explicit null")
    func stateNull() {
        let spool = TemporarySpool()
        let id = spool.createFlow(owner: "alice", ["--state-json", "null"])
        #expect(spool.text("flows/\(id)/manifest.json")?.contains("\"stateJson\": null") == true)
    }

    @Test("bad --state-json is a usage error (64) with a JSON error object under --json")
    func badJSON() {
        let spool = TemporarySpool()
        let r = spool.run(["flows", "create", "--owner", "alice", "--goal", "g", "--controller", "c", "--state-json", "{bad"])
        #expect(r.status == 64)
        #expect(r.stdout == "")
        #expect(r.stderr.hasPrefix("clawflow: --state-json is not valid JSON"))
        let j = spool.run(["flows", "create", "--owner", "alice", "--goal", "g", "--controller", "c", "--state-json", "[1,", "--json"])
        #expect(j.status == 64)
        #expect(errorField(jsonObject(j.stdout), "code") == "usage")
        #expect(!spool.exists, "a refused create does not create the spool")
    }

    @Test("an empty controller is a usage error")
    func emptyController() {
        let spool = TemporarySpool()
        let r = spool.run(["flows", "create", "--owner", "alice", "--goal", "g", "--controller", "  "])
        #expect(r.status == 64)
        #expect(r.stderr.contains("--controller"))
    }
}
