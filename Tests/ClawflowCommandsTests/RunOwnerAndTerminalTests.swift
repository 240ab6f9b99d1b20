import ClawflowTestSupport
import Foundation
import Testing

@Suite("clawflow run: the default owner key, and one readable line on a terminal", .serialized)
struct RunOwnerAndTerminalTests {
    @Test("run without --owner records the owner key user:<login name>, which then names the job")
    func defaultOwner() {
        let tmp = TemporarySpool()
        let job = tmp.startJob(["--", "true"])
        let owner = "user:" + NSUserName()
        #expect(tmp.manifest(job.flow)["ownerKey"] as? String == owner)
        #expect(tmp.taskRecord(job.flow, job.task)["ownerKey"] as? String == owner)
        #expect(tmp.run(["wait", owner]).status == 0)
        #expect(tmp.json(["flows", "show", owner])["flowId"] as? String == job.flow)
    }

    @Test(
        "on a terminal run prints one line with the ids and the commands that follow the job; piped, the ids only",
        .enabled(if: FileManager.default.isExecutableFile(atPath: ColourTests.script)))
    func readableLine() {
        let tmp = TemporarySpool()
        let r = ColourTests().onTerminal(tmp, ["run", "--owner", "me", "--", "true"], noColor: true)
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        let out = r.stdout.split(whereSeparator: \.isNewline).map(String.init)
        #expect(out.count == 1, "one line: \(r.stdout)")
        let line = out.first ?? ""
        let words = line.split(separator: " ").map(String.init)
        guard words.count > 4 else {
            Issue.record("too short: \(line)")
            return
        }
        let flow = words[2]
        let task = words[4].trimmingCharacters(in: CharacterSet(charactersIn: "()"))
        #expect(
            line
                == "Started flow \(flow) (task \(task)) for me in queue default; follow with clawflow --spool \(tmp.path) logs --follow \(task), or clawflow --spool \(tmp.path) wait \(flow)"
        )
        #expect(tmp.run(["wait", flow]).status == 0)
        #expect(tmp.taskRecord(flow, task)["status"] as? String == "succeeded")
        let piped = tmp.run(["run", "--owner", "me", "--", "true"])
        #expect(piped.stdout.split(separator: " ").count == 2 && !piped.stdout.contains("clawflow"))
        #expect(tmp.run(["wait", "me"]).status == 0)
    }

    @Test(
        "on a terminal a job that waits for a slot is reported queued",
        .enabled(if: FileManager.default.isExecutableFile(atPath: ColourTests.script)))
    func queuedLine() {
        let tmp = TemporarySpool()
        let gate = tmp.parent + "/gate"
        #expect(tmp.run(["queue", "set", "one", "--slots", "1"]).status == 0)
        let first = tmp.startJob(["--owner", "first", "--queue", "one", "--", "sh", "-c", "while [ ! -e \(gate) ]; do sleep 0.02; done"])
        let r = ColourTests().onTerminal(tmp, ["run", "--owner", "second", "--queue", "one", "--", "true"], noColor: true)
        #expect(r.status == 0)
        #expect(r.stdout.hasPrefix("Queued flow ") && r.stdout.contains(" for second in queue one; follow with clawflow"), "\(r.stdout)")
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(tmp.run(["wait", first.flow, "second"]).status == 0)
    }
}
