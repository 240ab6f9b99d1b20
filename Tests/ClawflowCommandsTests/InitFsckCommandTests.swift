import ClawflowTestSupport
import Foundation
import Glibc
import Testing

@Suite("clawflow init")
struct InitTests {
    @Test("init creates a private spool with VERSION and the layout directories")
    func creates() throws {
        let spool = TemporarySpool()
        let r = spool.run(["init"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(r.stdout == "Created the spool at \(spool.path).\n")
        #expect(spool.text("VERSION") == "clawflow-spool 1\n")
        let attributes = try FileManager.default.attributesOfItem(atPath: spool.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o700)
        for dir in ["flows", "owners", "incoming/tmp", "incoming/new", "rejected", "tmp", "run"] {
            var isDir: ObjCBool = false
            #expect(FileManager.default.fileExists(atPath: spool.file(dir), isDirectory: &isDir) && isDir.boolValue, "\(dir)")
        }
    }

    @Test("init twice exits 0 both times; the second says nothing changed")
    func twice() {
        let spool = TemporarySpool()
        let first = spool.run(["init", "--json"])
        #expect(first.status == 0)
        #expect(jsonObject(first.stdout)?["created"] as? Bool == true)
        #expect(jsonObject(first.stdout)?["spool"] as? String == spool.path)
        spool.addTask(owner: "alice")
        let second = spool.run(["init"])
        #expect(second.status == 0)
        #expect(second.stderr == "")
        #expect(second.stdout == "The spool at \(spool.path) is ready (nothing changed).\n")
        let third = spool.run(["init", "--json"])
        #expect(third.status == 0)
        #expect(jsonObject(third.stdout)?["created"] as? Bool == false)
        #expect(spool.flowDirectories().count == 1, "existing flows are kept")
    }

    @Test("init on a spool of another version exits 1 and leaves it alone; so do other commands")
    func otherVersion() throws {
        let spool = TemporarySpool()
        spool.value(["init"])
        try "clawflow-spool 2\n".write(toFile: spool.file("VERSION"), atomically: false, encoding: .utf8)
        let r = spool.run(["init"])
        #expect(r.status == 1)
        #expect(r.stdout == "")
        #expect(r.stderr.contains("another version"))
        #expect(r.stderr.contains("clawflow-spool 2"))
        let j = spool.run(["init", "--json"])
        #expect(j.status == 1)
        #expect(jsonObject(j.stdout)?["ok"] as? Bool == false)
        #expect(errorField(jsonObject(j.stdout), "message")?.contains("another version") == true)
        #expect(spool.text("VERSION") == "clawflow-spool 2\n")
        #expect(spool.run(["flows", "list"]).status == 1)
        #expect(spool.run(["tasks", "add", "--owner", "a", "--runtime", "cron"]).status == 1)
        #expect(spool.flowDirectories().isEmpty)
    }
}

@Suite("read commands on a missing spool")
struct MissingSpoolTests {
    @Test(
        "list-type read commands print an empty result, exit 0 and create nothing",
        arguments: [
            (["flows", "list"], "0 flows: 0 active, 0 finished\n"),
            (["tasks", "list"], "No tasks.\n"),
            (["flows", "list", "--status", "running", "--owner", "x"], "0 flows: 0 active, 0 finished\n"),
        ])
    func emptyText(arguments: [String], expected: String) {
        let spool = TemporarySpool()
        let r = spool.run(arguments)
        #expect(r.status == 0)
        #expect(r.stdout == expected)
        #expect(r.stderr == "")
        #expect(!spool.exists)
    }

    @Test("--json read commands print an empty document, exit 0 and create nothing")
    func emptyJSON() {
        let spool = TemporarySpool()
        let flows = spool.run(["flows", "list", "--json"])
        #expect(flows.status == 0)
        #expect(jsonObject(flows.stdout)?["count"] as? Int == 0)
        #expect((jsonObject(flows.stdout)?["flows"] as? [Any])?.isEmpty == true)
        #expect((jsonObject(flows.stdout)?["status"] as? [String: Any])?["total"] as? Int == 0)
        let tasks = spool.run(["tasks", "list", "--json"])
        #expect(tasks.status == 0)
        #expect(tasks.stdout == "{\n  \"count\": 0,\n  \"tasks\": []\n}\n")
        let fsck = spool.run(["fsck", "--json"])
        #expect(fsck.status == 0)
        #expect(jsonObject(fsck.stdout)?["ok"] as? Bool == true)
        #expect(!spool.exists)
    }

    @Test("fsck on a missing spool has nothing to check")
    func fsck() {
        let spool = TemporarySpool()
        let r = spool.run(["fsck"])
        #expect(r.status == 0)
        #expect(r.stdout == "No spool at \(spool.path); nothing to check.\n")
        #expect(!spool.exists)
    }

    @Test(
        "lookups on a missing spool are not found (exit 1) and create nothing",
        arguments: [
            ["flows", "show", "x"], ["flows", "cancel", "x"], ["tasks", "show", "x"], ["tasks", "set", "x", "--status", "running"], ["tasks", "cancel", "x"],
        ])
    func lookups(arguments: [String]) {
        let spool = TemporarySpool()
        let r = spool.run(arguments)
        #expect(r.status == 1)
        #expect(r.stdout == "")
        #expect(r.stderr == "clawflow: " + (arguments[0] == "flows" ? flowNotFound("x") : taskNotFound("x")) + "\n")
        #expect(!spool.exists)
    }

    @Test("the first write creates the spool")
    func firstWrite() {
        let spool = TemporarySpool()
        spool.addTask(owner: "alice")
        #expect(spool.text("VERSION") == "clawflow-spool 1\n")
        #expect(spool.flowDirectories().count == 1)
    }
}

@Suite("clawflow fsck")
struct FsckTests {
    @Test("a healthy spool is consistent: exit 0, ok true, no findings")
    func healthy() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: "running")
        spool.createFlow(owner: "team/a b")
        spool.value(["tasks", "set", t.task, "--status", "succeeded"])
        let r = spool.run(["fsck"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(r.stdout == "fsck: \(spool.path) is consistent (0 note(s)).\n")
        let j = spool.run(["fsck", "--json"])
        #expect(j.status == 0)
        #expect(topLevelKeys(j.stdout) == ["findings", "notes", "ok", "repairs"])
        #expect(jsonObject(j.stdout)?["ok"] as? Bool == true)
        #expect((jsonObject(j.stdout)?["findings"] as? [Any])?.isEmpty == true)
    }

    @Test("a missing owner link is noted, still resolves through the owner's index, and --repair rebuilds it")
    func ownerLink() throws {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice")
        try FileManager.default.removeItem(atPath: spool.file("owners/alice"))
        let r = spool.run(["fsck"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("note: missing_owner_link"))
        let shown = spool.run(["flows", "show", "alice", "--json"])
        #expect(shown.status == 0)
        #expect(jsonObject(shown.stdout)?["flowId"] as? String == t.flow)
        let repair = spool.run(["fsck", "--repair"])
        #expect(repair.status == 0)
        #expect(repair.stdout.contains("repaired: "))
        #expect(spool.ownerLink("alice") == "../flows/\(t.flow)")
        #expect(spool.run(["fsck"]).status == 0)
    }

    @Test("a queued job that lost its queue entry is a finding and --repair puts it back; an entry of no live flow is a note --repair removes")
    func queueEntries() throws {
        let (spool, gate, out) = gatedQueue("one", slots: 1)
        let blocker = spool.startJob(["--owner", "blocker", "--queue", "one"] + gatedCommand(gate, out, "blocker"))
        let queued = spool.startJob(["--owner", "queued", "--queue", "one", "--", "sh", "-c", "echo queued >> \(out)"])
        let waiting = spool.file("queues/one/waiting")
        let entries = try FileManager.default.contentsOfDirectory(atPath: waiting)
        #expect(entries == ["10000.\(queued.flow)"])
        try FileManager.default.removeItem(atPath: waiting + "/" + entries[0])
        let stale = "01a20000-0000-7000-8000-000000000000"
        _ = FileManager.default.createFile(atPath: waiting + "/10000.\(stale)", contents: nil)
        let r = spool.run(["fsck"])
        #expect(r.status == 1)
        #expect(
            r.stdout.contains("missing_queue_entry: \(spool.file("queues/one")): flow \(queued.flow) is queued in queue one but has no entry there"),
            "\(r.stdout)")
        #expect(r.stdout.contains("note: stale_queue_entry: \(waiting)/10000.\(stale)"), "\(r.stdout)")
        let repair = spool.run(["fsck", "--repair"])
        #expect(repair.status == 0, "\(repair.stdout)")
        #expect(repair.stdout.contains("put flow \(queued.flow) back in queue one's waiting/"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: waiting) == ["10000.\(queued.flow)"])
        #expect(spool.run(["fsck"]).stdout == "fsck: \(spool.path) is consistent (0 note(s)).\n")
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(spool.run(["wait", blocker.flow, queued.flow]).status == 0)
        #expect(fileLines(out) == ["blocker", "queued"])
    }
}

@Suite("bad input in the spool", .timeLimit(.minutes(1)))
struct BadInputTests {
    @Test("a garbage manifest: show names the file and the parse error and exits 1; list shows the rest; fsck reports it")
    func corruptManifest() throws {
        let spool = TemporarySpool()
        let good = spool.createFlow(owner: "good", goal: "still here")
        let bad = spool.createFlow(owner: "bad")
        let path = spool.file("flows/\(bad)/manifest.json")
        try "garbage{".write(toFile: path, atomically: false, encoding: .utf8)

        let show = spool.run(["flows", "show", bad])
        #expect(show.status == 1)
        #expect(show.stdout == "")
        #expect(show.stderr.contains(path))
        #expect(show.stderr.contains("not valid JSON"))
        let showJSON = spool.run(["flows", "show", bad, "--json"])
        #expect(showJSON.status == 1)
        #expect(errorField(jsonObject(showJSON.stdout), "code") == "invalid_record")
        #expect(errorField(jsonObject(showJSON.stdout), "path") == path)

        let list = spool.run(["flows", "list"])
        #expect(list.status == 1)
        #expect(list.stdout.contains(String(good.prefix(13))))
        #expect(list.stdout.contains("still here"))
        #expect(list.stderr.contains(path))

        #expect(spool.run(["flows", "show", good]).status == 0, "other flows are unaffected")

        let fsck = spool.run(["fsck"])
        #expect(fsck.status == 1)
        #expect(fsck.stdout.contains("unparseable_record: \(path)"))

        #expect(spool.run(["fsck", "--repair"]).status == 1, "an unreadable record cannot be repaired")
        #expect(spool.text("flows/\(bad)/manifest.json") == "garbage{", "and is never overwritten")
    }

    @Test("a garbage task file: show, tasks list and flows list report it on stderr and exit 1; fsck finds it")
    func corruptTask() throws {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: "running")
        let path = spool.file("flows/\(t.flow)/tasks/\(t.task).json")
        try #"{"oops"#.write(toFile: path, atomically: false, encoding: .utf8)

        let show = spool.run(["flows", "show", t.flow])
        #expect(show.status == 1)
        #expect(show.stderr.contains(path))
        let task = spool.run(["tasks", "show", t.task])
        #expect(task.status == 1)
        #expect(task.stderr.contains(path))
        let tasks = spool.run(["tasks", "list"])
        #expect(tasks.status == 1)
        #expect(tasks.stderr.contains(path))
        let set = spool.run(["tasks", "set", t.task, "--status", "failed"])
        #expect(set.status == 1)
        #expect(spool.text("flows/\(t.flow)/tasks/\(t.task).json") == #"{"oops"#, "never overwritten")
        let fsck = spool.run(["fsck"])
        #expect(fsck.status == 1)
        #expect(fsck.stdout.contains("unparseable_record: \(path)"))

        let list = spool.run(["flows", "list"])
        #expect(list.status == 1, "spec §4.4: a record that cannot be parsed is reported, never silently skipped")
        #expect(list.stderr.contains(path))
    }

    @Test("fsck --repair leaves the owner link and indexes of an unreadable flow alone, so restoring the file is enough")
    func repairKeepsLinksOfUnreadable() throws {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice")
        let manifest = spool.file("flows/\(t.flow)/manifest.json")
        let taskFile = spool.file("flows/\(t.flow)/tasks/\(t.task).json")
        let savedManifest = spool.text("flows/\(t.flow)/manifest.json") ?? ""
        let savedTask = spool.text("flows/\(t.flow)/tasks/\(t.task).json") ?? ""
        try "garbage".write(toFile: manifest, atomically: false, encoding: .utf8)
        try "garbage".write(toFile: taskFile, atomically: false, encoding: .utf8)
        let repair = spool.run(["fsck", "--repair"])
        #expect(repair.status == 1)
        #expect(repair.stdout.contains("unparseable_record"))
        #expect(spool.ownerLink("alice") == "../flows/\(t.flow)", "the owner link still points at the flow: \(repair.stdout)")
        // The user restores the files from a backup: lookups work again without another repair.
        try savedManifest.write(toFile: manifest, atomically: false, encoding: .utf8)
        try savedTask.write(toFile: taskFile, atomically: false, encoding: .utf8)
        #expect(spool.run(["flows", "show", "alice"]).status == 0)
        #expect(spool.run(["tasks", "show", t.task]).status == 0)
        #expect(spool.run(["fsck"]).status == 0)
    }

    @Test("a symlink planted as a task file is not followed; fsck flags it and --repair moves it to rejected/")
    func plantedSymlink() throws {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", ["--label", "real"])
        let name = "01234567-89ab-4def-8123-456789abcdef.json"
        let planted = spool.file("flows/\(t.flow)/tasks/\(name)")
        try FileManager.default.createSymbolicLink(atPath: planted, withDestinationPath: "/etc/passwd")

        for args in [["flows", "show", t.flow], ["flows", "show", t.flow, "--json"], ["tasks", "list"], ["flows", "list"], ["tasks", "show", t.task]] {
            let (r, elapsed) = spool.runGuarded(args)
            #expect(r.status != 124 && r.status != 137, "\(args) did not return")
            #expect(elapsed < 10)
            #expect(!r.stdout.contains("root:"), "\(args) followed the link")
            #expect(!r.stderr.contains("root:"))
        }
        let show = spool.run(["flows", "show", t.flow])
        #expect(show.stderr.contains(planted))
        #expect(show.stderr.contains("symlink"))

        let fsck = spool.run(["fsck"])
        #expect(fsck.status == 1)
        #expect(fsck.stdout.contains("unexpected_entry: \(planted)"))

        let repair = spool.run(["fsck", "--repair"])
        #expect(repair.status == 0, "everything found was repairable: \(repair.stdout)")
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: planted)) == nil, "moved out of the flow")
        let rejected = (try? FileManager.default.contentsOfDirectory(atPath: spool.file("rejected"))) ?? []
        #expect(rejected.contains { $0.hasSuffix(".reason") })
        #expect(rejected.count == 2)
        #expect(spool.run(["fsck"]).status == 0)
        #expect(spool.run(["flows", "show", t.flow]).status == 0)
    }

    @Test(
        "a FIFO planted as a task file is not blocked on; fsck flags it and --repair moves it to rejected/",
        arguments: ["x.json", "01234567-89ab-4def-8123-456789abcdef.json"])
    func plantedFIFOInTasks(name: String) {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice")
        let planted = spool.file("flows/\(t.flow)/tasks/\(name)")
        #expect(mkfifo(planted, 0o644) == 0)

        for args in [["flows", "show", t.flow], ["tasks", "list"], ["flows", "list"], ["tasks", "show", t.task], ["fsck"]] {
            let (r, elapsed) = spool.runGuarded(args)
            #expect(r.status != 124 && r.status != 137, "\(args) blocked on the FIFO")
            #expect(elapsed < 10)
        }
        let fsck = spool.run(["fsck"])
        #expect(fsck.status == 1)
        #expect(fsck.stdout.contains("unexpected_entry: \(planted)"))

        let (repair, _) = spool.runGuarded(["fsck", "--repair"])
        #expect(repair.status == 0, "everything found was repairable: \(repair.stdout)")
        #expect(!FileManager.default.fileExists(atPath: planted))
        let rejected = (try? FileManager.default.contentsOfDirectory(atPath: spool.file("rejected"))) ?? []
        #expect(rejected.count == 2)
        #expect(spool.run(["fsck"]).status == 0)
    }

    @Test("a FIFO planted in a flow directory is not blocked on; fsck --repair moves it to rejected/ with a .reason")
    func plantedFIFOInFlow() {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice")
        let planted = spool.file("flows/\(t.flow)/fifo")
        #expect(mkfifo(planted, 0o644) == 0)
        for args in [["flows", "show", t.flow], ["flows", "list"], ["tasks", "list"], ["tasks", "set", t.task, "--status", "running"]] {
            let (r, elapsed) = spool.runGuarded(args)
            #expect(r.status == 0, "\(args): \(r.stderr)")
            #expect(elapsed < 10)
        }
        let (fsck, _) = spool.runGuarded(["fsck"])
        #expect(fsck.status == 1)
        #expect(fsck.stdout.contains("unexpected_entry: \(planted)"))
        let (repair, _) = spool.runGuarded(["fsck", "--repair"])
        #expect(repair.status == 0)
        #expect(repair.stdout.contains("to rejected/"))
        #expect(!FileManager.default.fileExists(atPath: planted))
        let rejected = ((try? FileManager.default.contentsOfDirectory(atPath: spool.file("rejected"))) ?? []).sorted()
        #expect(rejected.count == 2)
        let reason = rejected.first { $0.hasSuffix(".reason") }.map { spool.record("rejected/" + $0) } ?? [:]
        #expect(keys(reason) == ["at", "code", "message", "name"])
        #expect(reason["code"] as? String == "unexpected_entry")
        #expect(reason["name"] as? String == "fifo")
        #expect(spool.run(["fsck"]).status == 0)
    }

    @Test("a symlinked manifest is not followed")
    func symlinkManifest() throws {
        let spool = TemporarySpool()
        let good = spool.createFlow(owner: "good")
        let bad = spool.createFlow(owner: "bad")
        let path = spool.file("flows/\(bad)/manifest.json")
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: "/etc/passwd")
        let (show, _) = spool.runGuarded(["flows", "show", bad])
        #expect(show.status == 1)
        #expect(show.stderr.contains("symlink"))
        #expect(!show.stdout.contains("root:") && !show.stderr.contains("root:"))
        let (list, _) = spool.runGuarded(["flows", "list"])
        #expect(list.status == 1)
        #expect(list.stdout.contains(String(good.prefix(13))))
        #expect(spool.run(["fsck"]).status == 1)
    }
}
