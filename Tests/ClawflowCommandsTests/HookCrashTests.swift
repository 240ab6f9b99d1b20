import ClawflowTestSupport
import Foundation
import Glibc
import Testing

/// Runs `clawflow ARGS` on the fixture's spool under `strace -f`, SIGKILLing a process at the
/// `when`-th call of `syscall` (strace counts per thread); returns the exit status of clawflow.
private func killed(_ f: HookFixture, at syscall: String, when n: Int, _ arguments: [String]) -> Int32 {
    runProgram(
        "/usr/bin/strace",
        ["-f", "-o", "/dev/null", "-e", "trace=\(syscall)", "-e", "inject=\(syscall):signal=KILL:when=\(n)", "--", Clawflow.binary, "--spool", f.tmp.path]
            + arguments
    ).status
}

@Suite("Notification hooks across crashes")
struct HookCrashTests {
    @Test("a writer killed after its write, before any deliverer, loses nothing: the next command delivers it once")
    func writerKilledBeforeHook() {
        let f = HookFixture(builtinsOnly: true)
        let (task, flow) = f.tmp.addTask(owner: "w", status: "running")
        // The first clone(2) of `tasks set` is the fork of its deliverer, after the write.
        let status = killed(f, at: "clone", when: 1, ["tasks", "set", task, "--status", "succeeded"])
        #expect(status != 0, "clawflow was killed at its fork")
        #expect(f.tmp.taskRecord(flow, task)["status"] as? String == "succeeded")
        #expect(f.pending().count == 1 && f.runs().isEmpty, "recorded, not delivered")
        #expect(f.tmp.run(["fsck"]).status == 0)
        f.tmp.value(["flows", "list"])
        f.settle()
        #expect(f.runs().map { [$0[3], $0[5], $0[6]] } == [["succeeded", "1", "0"]])
    }

    @Test("a deliverer killed between a hook's start and its record: the hook runs again, marked a repeat")
    func delivererKilledAfterStart() {
        let f = HookFixture(builtinsOnly: true)
        let (task, flow) = f.tmp.addTask(owner: "d", status: "running")
        // The deliverer's first wait4(2) is its first look at the hook it started.
        _ = killed(f, at: "wait4", when: 1, ["tasks", "set", task, "--status", "succeeded"])
        let end = Date().addingTimeInterval(10)
        while f.runs().isEmpty, Date() < end { usleep(20_000) }
        #expect(f.runs().count == 1)
        #expect(f.pending().count == 1, "the delivery is left started")
        // The delivery's journal: its first line, then each later line's fields over it.
        var left: [String: Any] = [:]
        for line in fileLines(f.tmp.file("notify/" + (f.pending().first ?? ""))) {
            for (k, v) in jsonObject(line) ?? [:] { left[k] = v }
        }
        #expect(left["status"] as? String == "started" && left["startedHook"] as? String == "hooks/10-log")
        #expect(f.tmp.run(["fsck"]).status == 0)
        f.tmp.value(["flows", "list"])
        f.settle()
        let runs = f.runs()
        #expect(runs.map { [$0[5], $0[6]] } == [["1", "0"], ["2", "1"]], "\(runs)")
        #expect(Set(runs.map { $0[4] }).count == 1, "one delivery, told twice")
        let events = f.notifyEvents(flow)
        #expect(events.count == 1 && events.first?["repeat"] as? Bool == true && events.first?["attempt"] as? Int == 2)
    }

    static let syscalls = ["fsync", "renameat"]

    @Test(
        "killed at any flush or rename of the write or the delivery, a transition's hook runs at least once, repeats marked, and never for a write undone",
        arguments: syscalls)
    func killedAtEveryStep(syscall: String) {
        let f = HookFixture(builtinsOnly: true)
        var cleanRuns = 0
        var kills = 0
        var orphans = 0
        for n in 1...40 {
            let (task, flow) = f.tmp.addTask(owner: "k\(n)", status: "running")
            let status = killed(f, at: syscall, when: n, ["tasks", "set", task, "--status", "succeeded"])
            if status != 0 { kills += 1 }
            let names = (try? FileManager.default.contentsOfDirectory(atPath: f.tmp.file("notify"))) ?? []
            if names.contains(where: { $0.hasPrefix(".") }) { orphans += 1 }
            let fsck = f.tmp.run(["fsck"])
            #expect(fsck.status == 0, "after a kill at \(syscall) #\(n): \(fsck.stdout)")
            f.tmp.value(["flows", "list"])  // any command delivers what is due
            f.settle()
            let runs = f.runs().filter { $0[1] == task }
            let succeeded = f.tmp.taskRecord(flow, task)["status"] as? String == "succeeded"
            if succeeded {
                #expect(!runs.isEmpty, "\(syscall) #\(n): a durable transition was not told")
                #expect(Set(runs.map { $0[4] }).count == 1, "\(syscall) #\(n): \(runs)")
                // A deliverer killed after marking a hook started and before starting it makes
                // the next run a repeat that is in fact the first: attempts count up, and every
                // run past the first attempt says it may be a repeat.
                let attempts = runs.compactMap { Int($0[5]) }
                #expect(attempts == attempts.sorted() && Set(attempts).count == attempts.count, "\(syscall) #\(n): attempts count up: \(runs)")
                #expect(runs.allSatisfy { $0[5] == "1" || $0[6] == "1" }, "\(syscall) #\(n): every run past the first attempt is marked a repeat: \(runs)")
            } else {
                #expect(runs.isEmpty, "\(syscall) #\(n): told of a write that did not happen: \(runs)")
            }
            if status == 0 {
                cleanRuns += 1
                if cleanRuns >= 3 { break }
            } else {
                cleanRuns = 0
            }
        }
        #expect(kills > 0, "strace never killed clawflow")
        if syscall == "renameat" { #expect(orphans > 0, "no kill left a delivery as a temp file to adopt") }
        #expect(f.tmp.run(["fsck"]).status == 0)
    }
}

@Suite("Notification hooks and users")
struct HookUserTests {
    @Test("no hook runs as another user than the one who wrote the record")
    func hooksRunAsTheWriter() throws {
        let tmp = try GroupMember.temporarySpool(parentMode: 0o777)
        let owner = GroupMember.spoolOwner
        let spool = tmp.path
        let log = tmp.parent + "/uids.log"
        _ = FileManager.default.createFile(atPath: log, contents: Data())
        chmod(log, 0o666)
        let bin = Clawflow.binary
        func asOwner(_ args: String) -> CommandResult { GroupMember.run("\(bin) --spool \(spool) \(args)", as: owner) }
        #expect(asOwner("init --shared-group \(GroupMember.group)").status == 0)
        let hook = "#!/bin/sh\necho \"$CLAWFLOW_TASK_ID $(id -u)\" >> \(log)\n"
        #expect(
            GroupMember.run("mkdir \(spool)/hooks && printf '%s' '\(hook)' > \(spool)/hooks/10-uid && chmod 755 \(spool)/hooks/10-uid", as: owner).status == 0)
        let ownerUid = GroupMember.run("id -u", as: owner).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        // The owner's own write: its hook runs, as the owner.
        let mine = asOwner("tasks add --owner o --runtime cron --status succeeded").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        // root writes into the owner's spool: its delivery file is root's; the owner's
        // deliverer leaves it, and root's deliverer does not run the owner's hook as root.
        let rootWrite = tmp.run(["tasks", "add", "--owner", "r", "--runtime", "cron", "--status", "succeeded"])
        #expect(rootWrite.status == 0, "\(rootWrite.stderr)")
        let theirs = rootWrite.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        _ = asOwner("maintenance --apply")  // it may not read root's flow; it must not run root's delivery
        let end = Date().addingTimeInterval(10)
        while fileLines(log).isEmpty, Date() < end { usleep(20_000) }
        usleep(500_000)
        #expect(fileLines(log) == ["\(mine) \(ownerUid)"], "only the owner's transition ran the owner's hook")
        #expect(!fileLines(log).contains { $0.hasPrefix(theirs) })
        // A member's drop may not name a hook, which the owner's clawflow would run.
        GroupMember.drop("h.json", #"{"kind":"task","ownerKey":"m","runtime":"cron","notifyCommand":"id"}"#, into: spool)
        #expect(asOwner("ingest").status == 0)
        let reason = GroupMember.run("cat \(spool)/rejected/h.json.reason", as: owner).stdout
        #expect(reason.contains("bad_fields") && reason.contains("notifyCommand"), "\(reason)")
    }
}
