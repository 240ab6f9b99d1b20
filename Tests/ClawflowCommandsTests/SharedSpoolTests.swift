import ClawflowTestSupport
import Foundation
import Glibc
import Testing

/// A second, unprivileged user in the group of a shared spool (`init --shared-group`).
enum GroupMember {
    static let group = "clawflow-share"
    static let user = "clawflow-member"

    /// A second user in the group who owns a spool (not root: root may move anything).
    static let spoolOwner = "clawflow-owner"

    /// Makes the group and the users once (all idempotent; the test runs as root).
    static let ready: Bool = {
        _ = runProgram("/usr/sbin/groupadd", ["-f", group])
        for name in [user, spoolOwner] where runProgram("/usr/bin/getent", ["passwd", name]).status != 0 {
            _ = runProgram("/usr/sbin/useradd", ["-M", "-N", "-g", group, "-s", "/bin/sh", name])
        }
        return [user, spoolOwner].allSatisfy { runProgram("/usr/bin/getent", ["passwd", $0]).status == 0 }
    }()

    /// A temporary spool whose parent directory the second users may enter (`parentMode`);
    /// the test needs root and the users.
    static func temporarySpool(parentMode: mode_t, sourceLocation: SourceLocation = #_sourceLocation) throws -> TemporarySpool {
        try #require(getuid() == 0, "needs root to add users and run clawflow as them", sourceLocation: sourceLocation)
        try #require(ready, "could not add the users \(user) and \(spoolOwner)", sourceLocation: sourceLocation)
        let tmp = TemporarySpool()
        #expect(chmod(tmp.parent, parentMode) == 0, sourceLocation: sourceLocation)
        return tmp
    }

    /// Drops `json` into `spool` as the member, the Maildir way (write in incoming/tmp, rename).
    static func drop(_ name: String, _ json: String, into spool: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let r = run("printf '%s\\n' '\(json)' > \(spool)/incoming/tmp/\(name) && mv \(spool)/incoming/tmp/\(name) \(spool)/incoming/new/\(name)")
        #expect(r.status == 0, "the member drops \(name): \(r.stderr)", sourceLocation: sourceLocation)
    }

    /// Runs `sh -c script` as the member, from `/`.
    static func run(_ script: String) -> CommandResult { run(script, as: user) }

    /// Runs `sh -c script` as `name`, from `/`.
    static func run(_ script: String, as name: String) -> CommandResult {
        runProgram("/usr/sbin/runuser", ["-u", name, "--", "/bin/sh", "-c", "cd / && " + script])
    }
}

@Suite("A shared spool's group")
struct SharedSpoolTests {
    @Test("a group member learns of a cancel of its own task from cancel/<taskId>.json, and can read nothing else")
    func memberSeesCancel() throws {
        let tmp = try GroupMember.temporarySpool(parentMode: 0o755)
        tmp.value(["init", "--shared-group", GroupMember.group])
        let taskId = UUID().uuidString.lowercased()
        let spool = tmp.path
        func drop(_ name: String, _ json: String) { GroupMember.drop(name, json, into: spool) }
        drop("job-1.json", #"{"kind":"task","ownerKey":"member-1","runtime":"cron","taskId":"\#(taskId)","status":"running"}"#)
        tmp.value(["ingest"])
        let marker = "\(spool)/cancel/\(taskId).json"
        #expect(GroupMember.run("cat \(marker)").status != 0, "no marker before a cancel")

        let cancel = tmp.run(["flows", "cancel", "member-1"])
        #expect(cancel.status == 1 && cancel.stderr.contains("still active"))
        let seen = GroupMember.run("cat \(marker)")
        #expect(seen.status == 0, "the member reads its marker: \(seen.stderr)")
        let body = jsonObject(seen.stdout)
        #expect(body?["taskId"] as? String == taskId)
        #expect(body?["cancelRequestedAt"] as? String == tmp.taskRecord(body?["flowId"] as? String ?? "", taskId)["cancelRequestedAt"] as? String)
        // Reachable by name only: the member cannot list cancel/ or read anything under flows/.
        #expect(GroupMember.run("ls \(spool)/cancel").status != 0)
        #expect(GroupMember.run("cat \(spool)/flows/\(body?["flowId"] as? String ?? "x")/manifest.json").status != 0)
        #expect(GroupMember.run("ls \(spool)/flows").status != 0)

        // The runner answers; the marker goes with the request.
        drop("job-1-cancelled.json", #"{"kind":"task-update","taskId":"\#(taskId)","status":"cancelled"}"#)
        tmp.value(["ingest"])
        #expect(tmp.json(["flows", "show", "member-1"])["status"] as? String == "cancelled")
        #expect(!FileManager.default.fileExists(atPath: marker))
        #expect(tmp.run(["fsck"]).status == 0)
    }

    @Test("a drop its owner cannot read (mode 000) is refused with a reason, not skipped on every pass")
    func unreadableDrop() throws {
        let tmp = try GroupMember.temporarySpool(parentMode: 0o777)
        let spool = tmp.path
        let bin = Clawflow.binary
        let setup = GroupMember.run(
            "\(bin) --spool \(spool) init >/dev/null && printf '{}' > \(spool)/incoming/new/locked.json && chmod 000 \(spool)/incoming/new/locked.json && printf '{\"kind\":\"task\",\"ownerKey\":\"m\",\"runtime\":\"cron\"}' > \(spool)/incoming/new/fine.json"
        )
        #expect(setup.status == 0, "\(setup.stderr)")
        let r = GroupMember.run("\(bin) --spool \(spool) ingest")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("Applied 1 drop") && r.stdout.contains("rejected 1"), "\(r.stdout)")
        #expect(tmp.record("rejected/locked.json.reason")["code"] as? String == "unreadable")
        #expect(!FileManager.default.fileExists(atPath: tmp.file("incoming/new/locked.json")))
    }

    @Test("what a member drops that is not a drop never stops the drop box, and nothing of the member's enters the owner's tree")
    func memberCannotBreakTheDropBox() throws {
        let tmp = try GroupMember.temporarySpool(parentMode: 0o777)
        let spool = tmp.path
        let bin = Clawflow.binary
        func owner(_ script: String) -> CommandResult { GroupMember.run(script, as: GroupMember.spoolOwner) }
        #expect(owner("\(bin) --spool \(spool) init --shared-group \(GroupMember.group)").status == 0)
        let drops = GroupMember.run(
            """
            cd \(spool)/incoming/new && mkdir full.json && touch full.json/inside && mkdir -m 0777 open.json && \
            printf '{"kind":"task","ownerKey":"x","runtime":"cron"}' > private.json && chmod 0600 private.json && \
            printf 'not json' > junk.json && \
            printf '{"kind":"task","ownerKey":"member-ok","runtime":"cron"}' > ok.json
            """)
        #expect(drops.status == 0, "\(drops.stderr)")
        let first = owner("\(bin) --spool \(spool) ingest")
        #expect(first.status == 0, "ingest exits 0: \(first.stderr)")
        #expect(first.stdout.contains("Applied 1 drop") && first.stdout.contains("rejected 4"), "\(first.stdout)")
        // Nothing in rejected/ belongs to the member; the junk's bytes were copied there.
        let listing = try FileManager.default.contentsOfDirectory(atPath: tmp.file("rejected"))
        for name in listing {
            let owner = try FileManager.default.attributesOfItem(atPath: tmp.file("rejected/" + name))[.ownerAccountName] as? String
            #expect(owner == GroupMember.spoolOwner, "rejected/\(name) belongs to \(owner ?? "?")")
        }
        #expect(tmp.text("rejected/junk.json") == "not json")
        // The directory the owner can neither move nor remove stays, reported once.
        #expect(FileManager.default.fileExists(atPath: tmp.file("incoming/new/full.json/inside")))
        #expect(!FileManager.default.fileExists(atPath: tmp.file("incoming/new/open.json")))
        let again = owner("\(bin) --spool \(spool) ingest")
        #expect(again.status == 0 && again.stdout.contains("rejected 0"), "\(again.stdout) \(again.stderr)")
        let watch = owner("\(bin) --spool \(spool) watch --once --log-level error")
        #expect(watch.status == 0, "\(watch.stderr)")
        let audit = owner("\(bin) --spool \(spool) audit --json")
        #expect(audit.stdout.contains("full.json"), "audit reports the entry left in place: \(audit.stdout)")
    }

    @Test("a member changes only the tasks it reported, and its drop names are its own idempotency keys")
    func membersOwnTasksAndNames() throws {
        let tmp = try GroupMember.temporarySpool(parentMode: 0o755)
        tmp.value(["init", "--shared-group", GroupMember.group])
        let spool = tmp.path
        func memberDrop(_ name: String, _ json: String) { GroupMember.drop(name, json, into: spool) }
        func ownerDrop(_ name: String, _ json: String) {
            #expect(FileManager.default.createFile(atPath: tmp.file("incoming/new/" + name), contents: Data(json.utf8)))
        }
        let mine = UUID().uuidString.lowercased()
        let theirs = tmp.addTask(owner: "owner-job", status: "running").task
        memberDrop("same.json", #"{"kind":"task","ownerKey":"member-job","runtime":"cron","taskId":"\#(mine)","status":"running"}"#)
        tmp.value(["ingest"])
        // The owner's drop of the same name is a drop of its own, applied, not a repeat.
        ownerDrop("same.json", #"{"kind":"task","ownerKey":"owner-drop","runtime":"cron","status":"running"}"#)
        var r = tmp.run(["ingest"])
        #expect(r.stdout.contains("Applied 1 drop") && r.stdout.contains("0 repeats"), "\(r.stdout)")
        #expect(tmp.json(["flows", "show", "owner-drop"])["status"] as? String == "running")
        // The member may update its own task, not the owner's; the owner's drop may not update the member's.
        memberDrop("mine-done.json", #"{"kind":"task-update","taskId":"\#(mine)","status":"succeeded"}"#)
        memberDrop("theirs-done.json", #"{"kind":"task-update","taskId":"\#(theirs)","status":"succeeded"}"#)
        ownerDrop("poke.json", #"{"kind":"task-update","taskId":"\#(mine)","progressSummary":"poked"}"#)
        r = tmp.run(["ingest"])
        #expect(r.stdout.contains("Applied 1 drop") && r.stdout.contains("rejected 2"), "\(r.stdout)")
        #expect(tmp.json(["tasks", "show", mine])["status"] as? String == "succeeded")
        #expect(tmp.json(["tasks", "show", theirs])["status"] as? String == "running")
        #expect(tmp.record("rejected/theirs-done.json.reason")["code"] as? String == "not_reporter")
        #expect(tmp.record("rejected/poke.json.reason")["code"] as? String == "not_reporter")
    }

    @Test("init --shared-group that fails leaves no half-made spool behind")
    func failedSharedInit() throws {
        let tmp = try GroupMember.temporarySpool(parentMode: 0o777)
        // The spool owner is not in the group "users", so it may not give the spool to it.
        let r = GroupMember.run("\(Clawflow.binary) --spool \(tmp.path) init --shared-group users", as: GroupMember.spoolOwner)
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        #expect(r.stderr.contains("Operation not permitted"), "\(r.stderr)")
        #expect(!tmp.exists, "nothing of the spool is left")
    }

    @Test("fsck --repair writes a missing cancel marker and removes one whose task ended")
    func repairMarkers() throws {
        let tmp = TemporarySpool()
        let waiting = tmp.addTask(owner: "w", status: "running")
        let ended = tmp.addTask(owner: "e", status: "running")
        #expect(tmp.run(["tasks", "cancel", waiting.task]).status == 1)
        #expect(tmp.run(["tasks", "cancel", ended.task]).status == 1)
        #expect(FileManager.default.fileExists(atPath: tmp.file("cancel/\(waiting.task).json")))
        try FileManager.default.removeItem(atPath: tmp.file("cancel/\(waiting.task).json"))
        tmp.value(["tasks", "set", ended.task, "--status", "cancelled"])
        #expect(!FileManager.default.fileExists(atPath: tmp.file("cancel/\(ended.task).json")))
        #expect(FileManager.default.createFile(atPath: tmp.file("cancel/\(ended.task).json"), contents: Data("{}".utf8)))
        let repaired = tmp.json(["fsck", "--repair"])
        let repairs = repaired["repairs"] as? [String] ?? []
        #expect(repairs.contains("wrote the cancel marker of task \(waiting.task)"), "\(repairs)")
        #expect(repairs.contains { $0.hasPrefix("removed the cancel marker \(ended.task).json") }, "\(repairs)")
        #expect(FileManager.default.fileExists(atPath: tmp.file("cancel/\(waiting.task).json")))
    }
}
