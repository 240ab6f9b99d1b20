import ClawflowTestSupport
import Foundation
import Glibc
import Testing

@Suite("clawflow wait and logs --follow: exit with the outcome", .serialized)
struct WaitCommandTests {
    @Test("wait blocks until the flows end and exits 0 when all succeeded, 1 when one did not")
    func waitsForAll() {
        let tmp = TemporarySpool()
        let ok = tmp.startJob(["--owner", "ok", "--", "sh", "-c", "sleep 0.3"])
        let bad = tmp.startJob(["--owner", "bad", "--", "sh", "-c", "sleep 0.2; exit 3"])
        let both = tmp.run(["wait", ok.flow, "bad"])
        #expect(both.status == 1, "\(both.stdout) \(both.stderr)")
        #expect(both.stdout == "\(ok.flow) succeeded\n\(bad.flow) failed\n")
        let one = tmp.run(["wait", ok.task])
        #expect(one.status == 0 && one.stdout == "\(ok.flow) succeeded\n", "a task id names its flow")
        let json = tmp.json(["wait", "ok", "bad"])
        let flows = json["flows"] as? [[String: Any]] ?? []
        #expect(flows.map { $0["status"] as? String } == ["succeeded", "failed"] && json["timedOut"] as? Bool == false)
        #expect((flows.last?["tasks"] as? [[String: Any]])?.first?["exitCode"] as? Int == 3)
    }

    @Test("wait on a queue's 31 jobs reads each flow again only when it changed, not all of them at every change")
    func waitReadsWhatChanged() throws {
        let (tmp, gate, _) = gatedQueue("one", slots: 1)
        var flows = [tmp.startJob(["--queue", "one", "--owner", "g", "--", "sh", "-c", "while [ ! -e \(gate) ]; do sleep 0.01; done"]).flow]
        for i in 0..<30 { flows.append(tmp.startJob(["--queue", "one", "--owner", "o\(i)", "--", "true"]).flow) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.5) { _ = FileManager.default.createFile(atPath: gate, contents: nil) }
        let log = tmp.parent + "/wait.strace"
        let r = runProgram("/usr/bin/strace", ["-qq", "-e", "trace=openat", "-o", log, "--", Clawflow.binary, "--spool", tmp.path, "wait"] + flows)
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(lines(r.stdout).count == 31 && lines(r.stdout).allSatisfy { $0.hasSuffix(" succeeded") })
        // Each job changes its flow a few times (queued, running, ended); re-reading every
        // pending flow at each wake-up made about 380 reads of manifests here.
        let reads = lines(try String(contentsOfFile: log, encoding: .utf8)).filter { $0.contains("manifest.json") }.count
        #expect(reads <= 8 * 31, "\(reads) reads of manifests for 31 flows")
    }

    @Test("wait on an already-finished flow returns at once; --exit-status gives the command's exit code or 128+signal")
    func exitStatus() {
        let tmp = TemporarySpool()
        let three = tmp.startJob(["--owner", "three", "--", "sh", "-c", "exit 3"])
        #expect(tmp.run(["wait", three.flow]).status == 1)
        #expect(tmp.run(["wait", three.flow, "--exit-status"]).status == 3)
        #expect(tmp.run(["wait", three.flow, "--exit-status", "--poll"]).status == 3)
        _ = tmp.startJob(["--owner", "killed", "--", "sh", "-c", "kill -9 $$"])
        #expect(tmp.run(["wait", "killed", "--exit-status"]).status == 128 + 9)
        let ext = tmp.run(["tasks", "add", "--owner", "ext", "--runtime", "cron", "--status", "succeeded"])
        #expect(ext.status == 0)
        #expect(tmp.run(["wait", "ext"]).status == 0)
        let refused = tmp.run(["wait", "ext", "--exit-status"])
        #expect(refused.status == 1 && refused.stderr.contains("no command task"))
        #expect(tmp.run(["wait", "ext", "three", "--exit-status"]).status == 64)
        #expect(tmp.run(["wait", "nobody"]).status == 1)
    }

    @Test("wait --timeout exits 124 while the flow still runs; --poll waits the same way; a cancel wakes it")
    func timeoutPollAndCancel() {
        let tmp = TemporarySpool()
        let slow = tmp.startJob(["--owner", "slow", "--", "sleep", "30"])
        let timedOut = tmp.run(["wait", "slow", "--timeout", "1"])
        #expect(timedOut.status == 124 && timedOut.stderr.contains("Timed out"))
        let json = tmp.json(["wait", "slow", "--timeout", "1", "--poll"])
        #expect(json["timedOut"] as? Bool == true)
        let canceller = Thread {
            usleep(300_000)
            tmp.run(["flows", "cancel", slow.flow])
        }
        canceller.start()
        let waited = tmp.run(["wait", slow.flow])
        #expect(waited.status == 1 && waited.stdout == "\(slow.flow) cancelled\n")
    }

    @Test("logs --follow exits 0 when the task succeeded and 1 when it did not")
    func logsFollowExit() {
        let tmp = TemporarySpool()
        let ok = tmp.startJob(["--owner", "ok", "--", "sh", "-c", "echo fine"])
        let followed = tmp.run(["logs", ok.task, "--follow"])
        #expect(followed.status == 0 && followed.stdout == "fine\n")
        let bad = tmp.startJob(["--owner", "bad", "--", "sh", "-c", "echo broken; exit 2"])
        let failed = tmp.run(["logs", bad.task, "--follow"])
        #expect(failed.status == 1 && failed.stdout == "broken\n")
        #expect(tmp.run(["logs", bad.task]).status == 0, "without --follow the outcome does not set the status")
    }
}
