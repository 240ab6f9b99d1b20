import ClawflowTestSupport
import Foundation
import Glibc
import Testing

@Suite("clawflow retry: an ended command job runs again", .serialized)
struct RetryCommandTests {
    @Test("a failed job runs again as a new task of the same flow, with its argv, cwd and environment; the old task and its log stay")
    func retriesFailedJob() throws {
        let tmp = TemporarySpool()
        let dir = tmp.parent + "/work"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let first = tmp.run(["run", "--owner", "job", "--cwd", dir, "--", "sh", "-c", "echo $MARK; pwd; test -e ok"], environment: ["MARK": "marked"])
        let (flow, oldTask) = (
            String(first.stdout.split(separator: " ")[0]), first.stdout.split(separator: " ")[1].trimmingCharacters(in: .whitespacesAndNewlines)
        )
        #expect(tmp.run(["wait", flow]).status == 1)
        _ = FileManager.default.createFile(atPath: dir + "/ok", contents: nil)
        let retried = tmp.run(["retry", "job"])
        #expect(retried.status == 0, "\(retried.stderr)")
        let newTask = retried.stdout.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        #expect(retried.stdout.hasPrefix(flow + " ") && newTask != oldTask)
        #expect(tmp.run(["wait", flow]).status == 0)
        let shown = tmp.json(["flows", "show", flow])
        #expect(shown["status"] as? String == "succeeded")
        #expect(tasksOf(shown).map { $0["status"] as? String } == ["failed", "succeeded"])
        #expect(tmp.run(["logs", oldTask]).stdout == "marked\n\(dir)\n")
        #expect(tmp.run(["logs", newTask]).stdout == "marked\n\(dir)\n")
        #expect(tmp.events(flow).contains { $0["event"] as? String == "retry" && $0["taskId"] as? String == newTask })
    }

    @Test("retrying an owner's older job while its other jobs have ended points the owner key at it again")
    func retryMovesOwnerLink() throws {
        let tmp = TemporarySpool()
        let gate = tmp.parent + "/gate"
        let older = tmp.run(["run", "--owner", "k", "--", "sh", "-c", "test -e \(gate) && sleep 2; test -e \(gate)"])
        let olderFlow = String(older.stdout.split(separator: " ")[0])
        #expect(tmp.run(["wait", olderFlow]).status == 1)
        let newer = tmp.run(["run", "--owner", "k", "--", "true"])
        #expect(tmp.run(["wait", String(newer.stdout.split(separator: " ")[0])]).status == 0)
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(tmp.run(["retry", olderFlow]).status == 0)
        // The owner's only unfinished job is the older one, running again: the key names it.
        #expect(tmp.json(["flows", "show", "k"])["flowId"] as? String == olderFlow)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: tmp.file("owners/k")) == "../flows/" + olderFlow)
        let fsck = tmp.run(["fsck"])
        #expect(fsck.status == 0, "\(fsck.stdout)\(fsck.stderr)")
        #expect(tmp.run(["wait", olderFlow]).status == 0)
    }

    @Test("a sequence is retried from the step that failed")
    func retriesSequenceFromFailedStep() {
        let tmp = TemporarySpool()
        let out = tmp.parent + "/out"
        let gate = tmp.parent + "/gate"
        let seq = tmp.startJob([
            "--owner", "seq", "--goal", "three steps", "--step", "echo one >> \(out)",
            "--step", "echo two >> \(out); test -e \(gate)", "--step", "echo three >> \(out)",
        ])
        #expect(tmp.run(["wait", seq.flow]).status == 1)
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(tmp.run(["retry", seq.flow]).status == 0)
        #expect(tmp.run(["wait", seq.flow]).status == 0)
        #expect(((try? String(contentsOfFile: out, encoding: .utf8)) ?? "") == "one\ntwo\ntwo\nthree\n")
        let shown = tmp.json(["flows", "show", seq.flow])
        #expect(tasksOf(shown).map { $0["status"] as? String } == ["succeeded", "failed", "succeeded", "succeeded"])
    }

    @Test("a cancelled job can be retried; an active job, a succeeded one and an external task are refused")
    func refusals() {
        let tmp = TemporarySpool()
        let slow = tmp.startJob(["--owner", "slow", "--", "sleep", "30"])
        let active = tmp.run(["retry", "slow"])
        #expect(active.status == 1 && active.stderr.contains("still"))
        #expect(tmp.run(["flows", "cancel", slow.flow]).status == 0)
        #expect(tmp.run(["retry", slow.task]).status == 0, "a task id names its flow")
        #expect(tmp.json(["flows", "show", slow.flow])["status"] as? String != "cancelled")
        #expect(tmp.run(["flows", "cancel", slow.flow]).status == 0)
        let done = tmp.startJob(["--owner", "done", "--", "true"])
        #expect(tmp.run(["wait", done.flow]).status == 0)
        let succeeded = tmp.run(["retry", "done"])
        #expect(succeeded.status == 1 && succeeded.stderr.contains("succeeded"))
        #expect(tmp.run(["tasks", "add", "--owner", "ext", "--runtime", "cron", "--status", "failed"]).status == 0)
        let external = tmp.run(["retry", "ext"])
        #expect(external.status == 1 && external.stderr.contains("other programs"))
        #expect(tmp.run(["retry", "nobody"]).status == 1)
    }
}
