import ClawflowTestSupport
import Foundation
import Glibc
import Testing

@Suite("Hostile spool contents are refused, never followed or waited on")
struct HostileSpoolTests {
    @Test("an events.jsonl replaced by a FIFO stops the write at once, before anything changes")
    func eventLogFIFO() {
        let tmp = TemporarySpool()
        let t = tmp.addTask(owner: "fifo", status: "running")
        let log = tmp.file("flows/\(t.flow)/events.jsonl")
        #expect(unlink(log) == 0 && mkfifo(log, 0o600) == 0)
        let (r, elapsed) = tmp.runGuarded(["tasks", "set", t.task, "--status", "succeeded"], seconds: 10)
        #expect(r.status == 1, "\(r.status) \(r.stderr)")
        #expect(elapsed < 5, "it did not wait on the FIFO")
        #expect(r.stderr.contains("events.jsonl is not a regular file"), "\(r.stderr)")
        #expect(tmp.taskRecord(t.flow, t.task)["status"] as? String == "running", "nothing was written")
        let listed = tmp.runGuarded(["flows", "show", "fifo"], seconds: 10)
        #expect(listed.result.status == 0)
    }

    @Test("an owner link planted to point at another owner's flow is not followed")
    func plantedOwnerLink() throws {
        let tmp = TemporarySpool()
        let alice = tmp.addTask(owner: "alice", status: "running")
        let mallory = tmp.addTask(owner: "mallory", status: "running")
        try FileManager.default.removeItem(atPath: tmp.file("owners/alice"))
        try FileManager.default.createSymbolicLink(atPath: tmp.file("owners/alice"), withDestinationPath: "../flows/\(mallory.flow)")
        let shown = tmp.json(["flows", "show", "alice"])
        #expect(shown["flowId"] as? String == alice.flow, "alice's own flow, found from the records")
        #expect(shown["ownerKey"] as? String == "alice")
        #expect(tmp.run(["fsck"]).status == 1, "fsck reports the link")
        tmp.value(["fsck", "--repair"])
        #expect(tmp.ownerLink("alice") == "../flows/\(alice.flow)")
    }

    @Test("a key spelled like a hashed name cannot take over the link of the long key it hashes")
    func hashedNameCollision() {
        let tmp = TemporarySpool()
        let long = String(repeating: "long-key/", count: 30)
        let victim = tmp.addTask(owner: long, status: "running")
        let hashed = tmp.ownerNames().first { $0.hasPrefix("sha256-") } ?? ""
        #expect(hashed.count == 71, "\(tmp.ownerNames())")
        let literal = tmp.addTask(owner: hashed, status: "running")
        #expect(tmp.ownerLink(hashed) == "../flows/\(victim.flow)", "the long key keeps its link")
        #expect(tmp.ownerLink("sha256%2D" + hashed.dropFirst(7)) == "../flows/\(literal.flow)", "the literal key has a name of its own")
        #expect(tmp.json(["flows", "show", long])["flowId"] as? String == victim.flow)
        #expect(tmp.json(["flows", "show", hashed])["flowId"] as? String == literal.flow)
        #expect(tmp.run(["fsck"]).status == 0)
    }

    @Test("a task-update drop may not touch a command clawflow runs: refused as command_task, and cancel still works")
    func dropOnCommandTask() throws {
        let tmp = TemporarySpool()
        let ids = tmp.value(["run", "--owner", "cmd", "--", "sleep", "30"]).split(separator: " ").map(String.init)
        let task = try #require(ids.last)
        let drop = #"{"kind":"task-update","taskId":"\#(task)","status":"succeeded"}"#
        #expect(FileManager.default.createFile(atPath: tmp.file("incoming/new/fake-done.json"), contents: Data(drop.utf8)))
        let r = tmp.run(["ingest"])
        #expect(r.status == 0 && r.stdout.contains("rejected 1"), "\(r.stdout)")
        #expect(tmp.record("rejected/fake-done.json.reason")["code"] as? String == "command_task")
        let cancel = tmp.run(["flows", "cancel", "cmd", "--grace", "1s"])
        #expect(cancel.status == 0 && cancel.stdout.contains("with status cancelled"), "\(cancel.stdout)\(cancel.stderr)")
    }

    @Test("text output replaces every bidirectional control, isolates included, in keys and records")
    func bidiControls() {
        let tmp = TemporarySpool()
        let sneaky = "ok\u{2066}evil\u{2069}\u{200F}\u{061C}"
        let t = tmp.addTask(owner: "bidi\u{2067}key", status: "running", ["--label", sneaky])
        // An unknown key's name is printed by tasks show too: it is sanitised like a value.
        let drop = #"{"kind":"task-update","taskId":"\#(t.task)","bad\u001b[31mkey\u2066":"x"}"#
        #expect(FileManager.default.createFile(atPath: tmp.file("incoming/new/odd-key.json"), contents: Data(drop.utf8)))
        tmp.value(["ingest"])
        #expect(tmp.taskRecord(t.flow, t.task)["bad\u{1B}[31mkey\u{2066}"] as? String == "x")
        for command in [["flows", "list"], ["tasks", "list"], ["flows", "show", t.flow], ["tasks", "show", t.task]] {
            let r = tmp.run(command)
            #expect(r.status == 0)
            let found = r.stdout.unicodeScalars.filter { [0x2066, 0x2067, 0x2069, 0x200F, 0x061C].contains($0.value) }
            #expect(found.isEmpty, "\(command) printed a bidi control: \(r.stdout)")
            #expect(!r.stdout.contains("\u{1B}"), "\(command) printed an escape: \(r.stdout)")
        }
    }
}
