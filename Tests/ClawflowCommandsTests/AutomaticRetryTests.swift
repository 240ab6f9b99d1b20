import ClawflowTestSupport
import Foundation
import Glibc
import Testing

@Suite("run --retries: a failed or timed-out job runs again by itself", .serialized)
struct AutomaticRetryTests {
    func retryEvents(_ tmp: TemporarySpool, _ flow: String) -> [[String: Any]] {
        tmp.events(flow).filter { $0["event"] as? String == "retry" }
    }

    /// Runs a job to its end (`wait` exiting `status`); its flow as `flows show --json` prints it.
    func ended(_ tmp: TemporarySpool, _ args: [String], status: Int32, sourceLocation: SourceLocation = #_sourceLocation) -> (id: String, flow: [String: Any]) {
        let job = tmp.startJob(args, sourceLocation: sourceLocation)
        #expect(tmp.run(["wait", job.flow]).status == status, sourceLocation: sourceLocation)
        return (job.flow, tmp.json(["flows", "show", job.flow], sourceLocation: sourceLocation))
    }

    @Test("a job that keeps failing runs 1 + N times, each retry a new task with an event retry, and then fails")
    func exhausted() {
        let tmp = TemporarySpool()
        let count = tmp.parent + "/count"
        let (id, flow) = ended(tmp, ["--owner", "flaky", "--retries", "2", "--", "sh", "-c", "echo run >> \(count); exit 4"], status: 1)
        let tasks = flow["tasks"] as? [[String: Any]] ?? []
        #expect(flow["status"] as? String == "failed")
        #expect(tasks.count == 3 && tasks.allSatisfy { $0["status"] as? String == "failed" && $0["exitCode"] as? Int == 4 })
        #expect(flow["retriesLeft"] as? Int == 0)
        #expect((try? String(contentsOfFile: count, encoding: .utf8)) == "run\nrun\nrun\n")
        let events = retryEvents(tmp, id)
        #expect(events.map { $0["previousTaskId"] as? String } == [tasks[0]["taskId"] as? String, tasks[1]["taskId"] as? String])
        #expect(events.map { $0["taskId"] as? String } == [tasks[1]["taskId"] as? String, tasks[2]["taskId"] as? String])
    }

    @Test("a run lost with its supervisor (kill -9) runs again when the job has retries left, started by the next command's hand-off")
    func lostRunRetried() {
        let tmp = TemporarySpool()
        let runs = tmp.parent + "/runs"
        let mark = tmp.parent + "/mark"
        // The first run waits to be killed; the second finds the mark and succeeds.
        let job = tmp.startJob(["--owner", "lost-retry", "--retries", "1", "--", "sh", "-c", "echo run >> \(runs); test -e \(mark) || sleep 30"])
        // Killed once its command has run its echo (a kill before would end it first).
        let running = waitForFlow(tmp, job.flow) { tasksOf($0).first?["pid"] != nil && fileLines(runs).count == 1 }
        let first = tasksOf(running).first ?? [:]
        let supervisor = Int32(first["supervisorPid"] as? Int ?? 0)
        _ = FileManager.default.createFile(atPath: mark, contents: nil)
        #expect(supervisor > 1 && kill(supervisor, SIGKILL) == 0)
        usleep(100_000)
        // A read records the run lost and, in the same write, the run again; the hand-off
        // after it starts that run.
        #expect(tmp.run(["wait", job.flow, "--timeout", "30s"]).status == 0)
        let flow = tmp.json(["flows", "show", job.flow])
        let tasks = flow["tasks"] as? [[String: Any]] ?? []
        #expect(tasks.map { $0["status"] as? String } == ["lost", "succeeded"], "\(tasks)")
        #expect(flow["retriesLeft"] as? Int == 0)
        let events = retryEvents(tmp, job.flow)
        #expect(events.map { $0["previousTaskId"] as? String } == [first["taskId"] as? String])
        #expect(fileLines(runs) == ["run", "run"])
    }

    @Test("a job that succeeds on its second run stops there, with the retries it did not need left")
    func succeedsOnRetry() {
        let tmp = TemporarySpool()
        let mark = tmp.parent + "/mark"
        let (id, flow) = ended(tmp, ["--owner", "second", "--retries", "3", "--", "sh", "-c", "test -e \(mark) || { touch \(mark); exit 1; }"], status: 0)
        #expect(flow["status"] as? String == "succeeded")
        #expect((flow["tasks"] as? [[String: Any]])?.map { $0["status"] as? String } == ["failed", "succeeded"])
        #expect(flow["retriesLeft"] as? Int == 2)
        #expect(tmp.value(["flows", "show", id]).contains("  Retries left:     2\n"))
    }

    @Test("a timed-out run is retried; a failed step of a sequence is retried from that step")
    func timedOutAndSequence() {
        let tmp = TemporarySpool()
        let slow = tmp.startJob(["--owner", "slow", "--retries", "1", "--timeout", "1", "--", "sleep", "30"])
        let mark = tmp.parent + "/step"
        let seq = tmp.startJob([
            "--owner", "seq", "--goal", "g", "--retries", "1", "--step", "true", "--step", "test -e \(mark) || { touch \(mark); exit 1; }", "--step", "true",
        ])
        #expect(tmp.run(["wait", slow.flow]).status == 1)
        #expect((tmp.json(["flows", "show", slow.flow])["tasks"] as? [[String: Any]])?.map { $0["status"] as? String } == ["timed_out", "timed_out"])
        #expect(tmp.run(["wait", seq.flow]).status == 0)
        let tasks = tmp.json(["flows", "show", seq.flow])["tasks"] as? [[String: Any]] ?? []
        #expect(tasks.map { $0["status"] as? String } == ["succeeded", "failed", "succeeded", "succeeded"], "step 1 ran once, step 2 twice")
        #expect(retryEvents(tmp, seq.flow).count == 1)
    }

    @Test("a retry waits --retry-delay, holding its slot; a cancel meanwhile ends the job without running it again")
    func delayAndCancel() {
        let tmp = TemporarySpool()
        let count = tmp.parent + "/count"
        #expect(tmp.run(["queue", "set", "one", "--slots", "1"]).status == 0)
        let job = tmp.startJob([
            "--owner", "later", "--queue", "one", "--retries", "1", "--retry-delay", "1h", "--", "sh", "-c", "echo run >> \(count); exit 1",
        ])
        let other = tmp.startJob(["--owner", "other", "--queue", "one", "--", "true"])
        let waiting = waitForFlow(tmp, job.flow) { tasksOf($0).count == 2 }
        #expect(waiting["status"] as? String == "queued")
        #expect(tasksOf(waiting).last?["status"] as? String == "queued")
        #expect(tmp.manifest(other.flow)["status"] as? String == "queued", "the job waiting to run again keeps its slot")
        #expect(tmp.run(["flows", "cancel", job.flow]).status == 0)
        #expect(tmp.run(["wait", other.flow]).status == 0)
        #expect(tasksOf(tmp.json(["flows", "show", job.flow])).map { $0["status"] as? String } == ["failed", "cancelled"])
        #expect((try? String(contentsOfFile: count, encoding: .utf8)) == "run\n")
    }

    @Test("--retries outside 0...100 and --retry-delay without --retries are usage errors")
    func usage() {
        let tmp = TemporarySpool()
        for args in [["--retries", "-1"], ["--retries", "101"], ["--retry-delay", "5s"], ["--retries", "1", "--retry-delay", "soon"]] {
            let r = tmp.run(["run", "--owner", "x"] + args + ["--", "true"])
            #expect(r.status == 64, "\(args): \(r.stderr)")
            #expect(r.stderr.contains("--retr"))
        }
    }
}
