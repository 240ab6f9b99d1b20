import ClawflowTestSupport
import Foundation
import Testing

@Suite("run --after: a job starts only after other flows succeeded", .serialized)
struct RunAfterTests {
    @Test("a job waits, holding no slot, until every flow it runs after succeeded, and flows show says what it waits for")
    func waitsForAll() {
        let (tmp, gate, out) = gatedQueue("one", slots: 1)
        let a = tmp.startJob(["--owner", "a"] + gatedCommand(gate, out, "a"))
        let b = tmp.startJob(["--owner", "b", "--queue", "one", "--after", "a", "--", "sh", "-c", "echo b >> \(out)"])
        let c = tmp.startJob(["--owner", "c", "--queue", "one", "--after", "a", "b", "--", "sh", "-c", "echo c >> \(out)"])
        let free = tmp.startJob(["--owner", "free", "--queue", "one", "--", "true"])
        #expect(tmp.run(["wait", free.flow]).status == 0, "a job that waits for other flows holds no slot of its queue")
        #expect(tmp.manifest(c.flow)["after"] as? [String] == [a.flow, b.flow])
        let shown = tmp.json(["flows", "show", "b"])
        #expect(shown["status"] as? String == "queued")
        #expect((shown["waitingFor"] as? [String: Any])?["flows"] as? [String] == [a.flow])
        #expect(tmp.value(["flows", "show", "c"]).contains("  Waiting for:      flows \(a.flow), \(b.flow) to succeed\n"))
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(tmp.run(["wait", a.flow, b.flow, c.flow]).status == 0)
        #expect(fileLines(out) == ["a", "b", "c"])
    }

    @Test("a hand-off reads a flow that many waiting jobs run after once, not once a job")
    func handOffReadsEachFlowWaitedForOnce() throws {
        let tmp = TemporarySpool()
        let gate = tmp.parent + "/gate"
        let out = tmp.parent + "/out"
        let blocker = tmp.startJob(["--owner", "blocker"] + gatedCommand(gate, out, "blocker"))
        let jobs = (0..<12).map { tmp.startJob(["--owner", "after-\($0)", "--after", "blocker", "--", "true"]).flow }
        // flows list reads every manifest once, then hands the default queue on: its 12 jobs
        // wait for the blocker, which that hand-off reads once (it read it 12 times). strace -y
        // names each directory descriptor's path: openat(5</…/flows/<id>>, "manifest.json", …).
        let log = tmp.parent + "/list.strace"
        let r = runProgram("/usr/bin/strace", ["-y", "-qq", "-e", "trace=openat", "-o", log, "--", Clawflow.binary, "--spool", tmp.path, "flows", "list"])
        #expect(r.status == 0, "\(r.stderr)")
        let reads = lines(try String(contentsOfFile: log, encoding: .utf8)).filter { $0.contains(blocker.flow + ">, \"manifest.json\"") }.count
        #expect(reads == 2, "\(reads) reads of the blocker's manifest")
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(tmp.run(["wait", blocker.flow] + jobs).status == 0)
    }

    @Test("when a flow it runs after fails or is cancelled, the job ends cancelled without running, its summary naming that flow")
    func cancelledWhenOneFails() {
        let tmp = TemporarySpool()
        let gate = tmp.parent + "/gate"
        let out = tmp.parent + "/out"
        let failing = tmp.startJob(["--owner", "failing"] + gatedCommand(gate, out, "failing", exit: 3))
        let dependent = tmp.startJob(["--owner", "dependent", "--after", failing.flow, "--", "sh", "-c", "echo dependent >> \(out)"])
        let chained = tmp.startJob(["--owner", "chained", "--after", "dependent", "--", "sh", "-c", "echo chained >> \(out)"])
        let long = tmp.startJob(["--owner", "long", "--", "sleep", "30"])
        let onLong = tmp.startJob(["--owner", "on-long", "--after", "long", "--", "sh", "-c", "echo on-long >> \(out)"])
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(tmp.run(["wait", failing.flow, dependent.flow, chained.flow]).status == 1)
        let d = tmp.json(["flows", "show", dependent.flow])
        #expect(d["status"] as? String == "cancelled")
        #expect(d["blockedSummary"] as? String == "not run: flow \(failing.flow), which it runs after, ended failed")
        #expect((d["tasks"] as? [[String: Any]])?.first?["error"] as? String == "not run: flow \(failing.flow), which it runs after, ended failed")
        #expect(tmp.manifest(chained.flow)["blockedSummary"] as? String == "not run: flow \(dependent.flow), which it runs after, ended cancelled")
        #expect(tmp.run(["flows", "cancel", "long", "--grace", "1s"]).status == 0)
        #expect(tmp.run(["wait", onLong.flow]).status == 1)
        #expect(tmp.manifest(onLong.flow)["blockedSummary"] as? String == "not run: flow \(long.flow), which it runs after, ended cancelled")
        #expect(fileLines(out) == ["failing"])
    }

    @Test("flows show says a queued job waits for a slot; --after an unknown flow is refused")
    func slotAndUnknown() {
        let (tmp, gate, out) = gatedQueue("one", slots: 1)
        let first = tmp.startJob(["--owner", "first", "--queue", "one"] + gatedCommand(gate, out, "first"))
        let second = tmp.startJob(["--owner", "second", "--queue", "one", "--", "true"])
        #expect(tmp.value(["flows", "show", "second"]).contains("  Waiting for:      a slot of queue one\n"))
        #expect((tmp.json(["flows", "show", "second"])["waitingFor"] as? [String: Any])?["queue"] as? String == "one")
        #expect(tmp.json(["flows", "show", "first"])["waitingFor"] == nil, "a running job waits for nothing")
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(tmp.run(["wait", first.flow, second.flow]).status == 0)
        let r = tmp.run(["run", "--owner", "x", "--after", "nobody", "--", "true"])
        #expect(r.status == 1 && r.stderr.contains("Flow not found: nobody"))
        #expect(tmp.json(["flows", "list", "--owner", "x"])["count"] as? Int == 0)
    }

    @Test("a job behind a full queue is cancelled as soon as a flow it runs after fails, before any slot frees")
    func cancelledBehindFullQueue() {
        let tmp = TemporarySpool()
        let gate = tmp.parent + "/gate"
        let failGate = tmp.parent + "/fail-gate"
        let out = tmp.parent + "/out"
        #expect(tmp.run(["queue", "set", "one", "--slots", "1"]).status == 0)
        let blocker = tmp.startJob(["--owner", "blocker", "--queue", "one"] + gatedCommand(gate, out, "blocker"))
        let failing = tmp.startJob(["--owner", "failing"] + gatedCommand(failGate, out, "failing", exit: 3))
        let waiting = (0..<3).map { tmp.startJob(["--owner", "w\($0)", "--queue", "one", "--", "true"]) }
        let dependent = tmp.startJob(["--owner", "dependent", "--queue", "one", "--after", failing.flow, "--", "sh", "-c", "echo dependent >> \(out)"])
        _ = FileManager.default.createFile(atPath: failGate, contents: nil)
        #expect(tmp.run(["wait", failing.flow, dependent.flow, "--timeout", "20s"]).status == 1)
        #expect(tmp.manifest(dependent.flow)["status"] as? String == "cancelled")
        #expect(tmp.manifest(blocker.flow)["status"] as? String == "running", "the queue's one slot is still held")
        #expect(waiting.allSatisfy { tmp.manifest($0.flow)["status"] as? String == "queued" })
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(tmp.run(["wait", blocker.flow] + waiting.map(\.flow)).status == 0)
        #expect(fileLines(out) == ["failing", "blocker"])
    }
}
