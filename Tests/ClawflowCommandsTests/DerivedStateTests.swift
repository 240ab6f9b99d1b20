import ClawflowTestSupport
import Foundation
import Testing

/// A spool written by hand from the spec's layout only (§4): VERSION, flows/, owners/,
/// incoming/tmp and incoming/new, rejected/, tmp/, run/ — no index/, no incoming/claimed or
/// incoming/applied, nothing made by clawflow. Alice owns a one-task flow whose task reports
/// under run id `r-1`; bob owns a managed flow and has no owner link.
struct SpecLayoutSpool {
    let tmp = TemporarySpool()
    static let aliceFlow = "0190f3a2-7c41-7d2e-8a25-0cc6c3d39aea"
    static let aliceTask = "0190f3a2-7c41-7d2e-8a25-0cc6c3d39aeb"
    static let bobFlow = "0190f3a2-7c41-7d2e-9a25-0cc6c3d39aec"

    init(without: [String] = []) {
        let fm = FileManager.default
        let now = ISO8601DateFormatter.string(
            from: Date(), timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withInternetDateTime, .withFractionalSeconds])
        for dir in ["flows/\(Self.aliceFlow)/tasks", "flows/\(Self.bobFlow)/tasks", "owners", "incoming/tmp", "incoming/new", "rejected", "tmp", "run"] {
            try? fm.createDirectory(atPath: tmp.file(dir), withIntermediateDirectories: true)
        }
        func write(_ relative: String, _ text: String) {
            #expect(fm.createFile(atPath: tmp.file(relative), contents: Data(text.utf8)), "writing \(relative)")
        }
        write("VERSION", "clawflow-spool 1\n")
        write(
            "flows/\(Self.aliceFlow)/manifest.json",
            """
            {"schema": 1, "flowId": "\(Self.aliceFlow)", "syncMode": "task_mirrored", "ownerKey": "alice", "revision": 0,
             "status": "running", "notifyPolicy": "done_only", "stateJson": null, "waitJson": null,
             "createdAt": "\(now)", "updatedAt": "\(now)"}

            """)
        write(
            "flows/\(Self.aliceFlow)/tasks/\(Self.aliceTask).json",
            """
            {"schema": 1, "taskId": "\(Self.aliceTask)", "parentFlowId": "\(Self.aliceFlow)", "ownerKey": "alice",
             "runtime": "cron", "status": "running", "runId": "r-1", "createdAt": "\(now)", "lastEventAt": "\(now)", "startedAt": "\(now)"}

            """)
        write(
            "flows/\(Self.bobFlow)/manifest.json",
            """
            {"schema": 1, "flowId": "\(Self.bobFlow)", "syncMode": "managed", "controllerId": "sched", "ownerKey": "bob",
             "revision": 0, "status": "running", "stateJson": null, "waitJson": null, "createdAt": "\(now)", "updatedAt": "\(now)"}

            """)
        try? fm.createSymbolicLink(atPath: tmp.file("owners/alice"), withDestinationPath: "../flows/\(Self.aliceFlow)")
        for name in without { try? fm.removeItem(atPath: tmp.file(name)) }
    }
}

@Suite("Derived state is never required")
struct DerivedStateTests {
    /// Each command, its arguments, and a text its stdout must hold.
    static let commands: [(arguments: [String], stdout: String)] = [
        (["flows", "list"], "2 flows"),
        (["flows", "list", "--owner", "bob"], SpecLayoutSpool.bobFlow.prefix(13).description),
        (["flows", "show", "alice"], SpecLayoutSpool.aliceFlow),
        (["flows", "show", "bob"], SpecLayoutSpool.bobFlow),
        (["flows", "show", String(SpecLayoutSpool.bobFlow.prefix(23))], SpecLayoutSpool.bobFlow),
        (["tasks", "list"], "alice"),
        (["tasks", "show", "r-1"], SpecLayoutSpool.aliceTask),
        (["tasks", "show", SpecLayoutSpool.aliceTask], "r-1"),
        (["tasks", "show", String(SpecLayoutSpool.aliceTask.prefix(27))], "r-1"),
        (["events"], ""),
        (["audit"], "No findings"),
        (["fsck"], "consistent"),
        (["maintenance"], ""),
        (["tasks", "set", "r-1", "--status", "succeeded"], "succeeded"),
        (["tasks", "add", "bob", "--runtime", "cron", "--run-id", "r-2"], ""),
        (["tasks", "add", "--owner", "carol", "--runtime", "cron", "--task-id", "0190f3a2-7c41-7d2e-8a25-0cc6c3d39aeb"], "NOT-REACHED"),
        (["flows", "create", "--owner", "dave", "--goal", "g", "--controller", "c"], ""),
        (["flows", "cancel", "bob"], "Cancelled"),
        (["flows", "request-cancel", SpecLayoutSpool.bobFlow, "--expect-revision", "0"], ""),
        (["run", "--owner", "erin", "--", "true"], ""),
        (["ingest"], "Applied 0 drops"),
        (["watch", "--once", "--log-level", "error"], ""),
        (["init"], ""),
        (["fsck", "--repair"], "consistent"),
        (["maintenance", "--apply"], ""),
    ]

    @Test("every command works on a spool written from the spec's layout alone", arguments: commands.indices)
    func everyCommand(_ index: Int) {
        let (arguments, stdout) = Self.commands[index]
        let spool = SpecLayoutSpool()
        let r = spool.tmp.run(arguments)
        if stdout == "NOT-REACHED" {
            // A task id that the spool already holds is refused by the scan that stands in for the index.
            #expect(r.status == 1 && r.stderr.contains("already used"), "\(arguments): \(r.status) \(r.stderr)")
            return
        }
        #expect(r.status == 0, "clawflow \(arguments.joined(separator: " ")) exited \(r.status): \(r.stderr)")
        #expect(stdout.isEmpty || r.stdout.contains(stdout), "clawflow \(arguments.joined(separator: " ")) printed: \(r.stdout)")
        #expect(!r.stderr.contains("No such file"), "\(r.stderr)")
        // Afterwards the spool is whole by fsck's measure: a write rebuilt what it derives.
        let check = spool.tmp.run(["fsck", "--json"])
        #expect(check.status == 0, "fsck after \(arguments): \(check.stdout)")
    }

    @Test("the first write rebuilds every index and owner link from the records, in place before it writes")
    func firstWriteRebuilds() throws {
        let spool = SpecLayoutSpool()
        let before = spool.tmp.run(["fsck", "--json"])
        let notes = (jsonObject(before.stdout)?["notes"] as? [[String: Any]] ?? []).compactMap { $0["code"] as? String }
        #expect(notes.contains("missing_derived"), "fsck notes the missing indexes: \(before.stdout)")
        spool.tmp.value(["tasks", "set", "r-1", "--progress", "half way", "--status", "running"])
        let fm = FileManager.default
        #expect(
            try fm.destinationOfSymbolicLink(atPath: spool.tmp.file("index/tasks/\(SpecLayoutSpool.aliceTask)")) == "../../flows/\(SpecLayoutSpool.aliceFlow)")
        #expect(
            try fm.destinationOfSymbolicLink(atPath: spool.tmp.file("index/owners/bob/\(SpecLayoutSpool.bobFlow)"))
                == "../../../flows/\(SpecLayoutSpool.bobFlow)")
        #expect(
            try fm.destinationOfSymbolicLink(atPath: spool.tmp.file("index/runs/r-1/\(SpecLayoutSpool.aliceTask)"))
                == "../../../flows/\(SpecLayoutSpool.aliceFlow)")
        #expect(fm.fileExists(atPath: spool.tmp.file("index/runs/.complete")))
        #expect(fm.fileExists(atPath: spool.tmp.file("incoming/claimed")) && fm.fileExists(atPath: spool.tmp.file("incoming/applied")))
        let after = spool.tmp.run(["fsck", "--json"])
        #expect(after.status == 0)
        let notesAfter = (jsonObject(after.stdout)?["notes"] as? [[String: Any]] ?? []).compactMap { $0["code"] as? String }
        #expect(!notesAfter.contains("missing_derived"), "\(after.stdout)")
        // No temp directory of the build is left beside the indexes.
        #expect(((try? fm.contentsOfDirectory(atPath: spool.tmp.file("index"))) ?? []).sorted() == ["owners", "runs", "tasks"])
    }

    @Test(
        "deleting index/, owners/, run/ or the drop box's own directories by hand breaks no command",
        arguments: ["index", "owners", "run", "incoming/claimed", "incoming/applied", "tmp", "index/tasks"])
    func deletedByHand(_ removed: String) throws {
        let tmp = TemporarySpool()
        let a = tmp.addTask(owner: "alice", status: "running", ["--run-id", "nightly"])
        tmp.createFlow(owner: "alice")
        try FileManager.default.removeItem(atPath: tmp.file(removed))
        // Reads resolve by owner key, task id, prefix and run id without it, and say nothing is wrong.
        for lookup in [
            ["flows", "show", a.flow], ["tasks", "show", "nightly"], ["tasks", "show", a.task], ["tasks", "show", String(a.task.prefix(27))],
            ["flows", "list", "--owner", "alice"],
        ] {
            let r = tmp.run(lookup)
            #expect(r.status == 0 && r.stderr.isEmpty, "\(lookup) with \(removed) deleted: \(r.status) \(r.stderr)")
        }
        let shown = tmp.json(["flows", "show", "alice"])
        #expect(shown["syncMode"] as? String == "managed", "the owner's newest live flow is found without its link or index")
        // Writes, the watcher and repairs work, and the spool is whole again afterwards.
        tmp.value(["tasks", "set", "nightly", "--status", "succeeded"])
        let drop = "{\"kind\":\"task-update\",\"runId\":\"nightly\",\"progressSummary\":\"late\"}"
        #expect(FileManager.default.createFile(atPath: tmp.file("incoming/new/late.json"), contents: Data(drop.utf8)))
        tmp.value(["watch", "--once", "--log-level", "error"])
        tmp.value(["fsck", "--repair"])
        let check = tmp.run(["fsck", "--json"])
        let report = jsonObject(check.stdout)
        #expect(check.status == 0 && (report?["findings"] as? [Any])?.isEmpty == true && (report?["notes"] as? [Any])?.isEmpty == true, "\(check.stdout)")
        #expect(FileManager.default.fileExists(atPath: tmp.file(removed)))
    }

    @Test("ingest on a directory with drops and no VERSION makes the spool and applies them, as watch does")
    func ingestWithoutVersion() throws {
        let tmp = TemporarySpool()
        try FileManager.default.createDirectory(atPath: tmp.file("incoming/new"), withIntermediateDirectories: true)
        let drop = #"{"kind":"task","ownerKey":"dropper","runtime":"cron","label":"first","status":"running"}"#
        #expect(FileManager.default.createFile(atPath: tmp.file("incoming/new/first.json"), contents: Data(drop.utf8)))
        let r = tmp.run(["ingest"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("Applied 1 drop"), "\(r.stdout)")
        #expect(tmp.text("VERSION") == "clawflow-spool 1\n")
        #expect(tmp.json(["flows", "show", "dropper"])["status"] as? String == "running")
        // With no drops waiting, a missing spool is still left uncreated.
        let empty = TemporarySpool()
        let none = empty.run(["ingest"])
        #expect(none.status == 0 && none.stdout.contains("Nothing to ingest"))
        #expect(!empty.exists)
    }
}
