import ClawflowModel
import ClawflowTestSupport
import Foundation
import Glibc
import SystemPackage
import Testing

@testable import ClawflowSpool

/// Starts `/bin/sh -c script` in its own process group and returns its pid.
func spawnShell(_ script: String, environment: [String: String]) -> pid_t {
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP))
    posix_spawnattr_setpgroup(&attr, 0)
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    let args: [String] = ["/bin/sh", "-c", script]
    let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
    let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { (argv + envp).forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, "/bin/sh", nil, &attr, argv, envp)
    precondition(rc == 0, "posix_spawn failed: \(rc)")
    return pid
}

/// Waits for a child and returns its raw wait status.
@discardableResult
func reap(_ pid: pid_t) -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
    return status
}

@Suite("Many writers at once", .serialized)
struct ConcurrencyTests {
    @Test("8 processes adding and updating tasks on one flow lose no update")
    func eightWriters() throws {
        let tmp = TemporarySpool()
        let flow = tmp.value(["flows", "create", "--owner", "shared", "--goal", "g", "--controller", "c", "--running"])
        let perWriter = 6
        let script = """
            for i in $(seq 1 \(perWriter)); do
              id=$("$CLAWFLOW" --spool "$SPOOL" tasks add "$FLOW" --runtime worker --label "w$W-$i") || exit 1
              "$CLAWFLOW" --spool "$SPOOL" tasks set "$id" --status running >/dev/null || exit 2
              "$CLAWFLOW" --spool "$SPOOL" tasks set "$id" --status succeeded --summary "w$W-$i" >/dev/null || exit 3
            done
            """
        let pids = (1...8).map { w in
            spawnShell(script, environment: ["CLAWFLOW": Clawflow.binary, "SPOOL": tmp.path, "FLOW": flow, "W": String(w)])
        }
        for pid in pids { #expect(reap(pid) == 0) }
        let spool = try Spool.open(at: FilePath(tmp.path))
        let snap = try spool.readFlow(flow)
        #expect(snap.tasks.count == 8 * perWriter)
        #expect(snap.tasks.allSatisfy { $0.status == .succeeded })
        #expect(Set(snap.tasks.compactMap { $0.string(.terminalSummary) }).count == 8 * perWriter)
        let events = try String(contentsOfFile: tmp.file("flows/\(flow)/events.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(events.filter { $0.contains(#""event":"linked""#) }.count == 8 * perWriter)
        #expect(events.filter { $0.contains(#""to":"succeeded""#) }.count == 8 * perWriter)
        #expect(try spool.fsck(repair: false).findings.isEmpty)
    }

    @Test("8 processes creating flows for 3 owners leave every owner link on the rule's pick")
    func concurrentOwners() throws {
        let tmp = TemporarySpool()
        let script = """
            for i in 1 2 3 4 5; do
              id=$("$CLAWFLOW" --spool "$SPOOL" tasks add --owner "owner-$(( (W + i) % 3 ))" --runtime cron --status running) || exit 1
              if [ $(( i % 2 )) = 0 ]; then "$CLAWFLOW" --spool "$SPOOL" tasks set "$id" --status succeeded >/dev/null || exit 2; fi
            done
            """
        let pids = (1...8).map { w in spawnShell(script, environment: ["CLAWFLOW": Clawflow.binary, "SPOOL": tmp.path, "W": String(w)]) }
        for pid in pids { #expect(reap(pid) == 0) }
        let spool = try Spool.open(at: FilePath(tmp.path))
        #expect(try spool.flowIds().count == 40)
        let report = try spool.fsck(repair: false)
        #expect(report.findings.isEmpty, "\(report.findings)")
        #expect(report.notes.isEmpty, "\(report.notes)")
    }
}

/// Waits up to `seconds` for child `pid` to exit; its wait status, or nil while it runs.
func reap(_ pid: pid_t, within seconds: Double) -> Int32? {
    let deadline = Date().addingTimeInterval(seconds)
    var status: Int32 = 0
    while Date() < deadline {
        let got = waitpid(pid, &status, WNOHANG)
        if got == pid { return status }
        if got == -1 && errno != EINTR { return nil }
        usleep(10_000)
    }
    return nil
}

@Suite("Owners' locks", .serialized)
struct OwnerLockTests {
    /// A spool with a running task for each of `owners` (their ids, in order), and a
    /// transaction holding owner "a"'s lock, shared or exclusive, taken through a spool opened
    /// on its own (flock belongs to an open file: another process's locks conflict the same way).
    func holdingOwnerLock(owners: [String], shared: Bool) throws -> (TemporarySpool, Spool, Transaction, tasks: [String]) {
        let tmp = TemporarySpool()
        let tasks = owners.map { tmp.value(["tasks", "add", "--owner", $0, "--runtime", "cron", "--status", "running"]) }
        let spool = try Spool.open(at: FilePath(tmp.path))
        let held = Transaction(spool)
        try held.lockOwners(["a"], exclusive: false, sharedIf: shared ? { true } : nil)
        #expect(!held.holdsSpoolLock)
        return (tmp, spool, held, tasks)
    }

    /// Starts `clawflow --spool <tmp> <arguments>` (a shell's words) in the background.
    func clawflow(_ tmp: TemporarySpool, _ arguments: String) -> pid_t {
        spawnShell(#""$CLAWFLOW" --spool "$SPOOL" \#(arguments) >/dev/null"#, environment: ["CLAWFLOW": Clawflow.binary, "SPOOL": tmp.path])
    }

    @Test("while one owner's lock is held, another owner's flow ends at once and the same owner's waits for it")
    func otherOwnersGoOn() throws {
        let (tmp, spool, held, tasks) = try holdingOwnerLock(owners: ["a", "b"], shared: false)
        let other = clawflow(tmp, "tasks set \(tasks[1]) --status succeeded")
        #expect(reap(other, within: 20) == 0, "a change for owner b waited for owner a's lock")
        let same = clawflow(tmp, "tasks set \(tasks[0]) --status succeeded")
        let early = reap(same, within: 1)
        #expect(early == nil, "a change for owner a went on while its owner's lock was held")
        // fsck --repair locks the whole spool: it waits for the owner's lock too.
        let repair = clawflow(tmp, "fsck --repair")
        #expect(reap(repair, within: 1) == nil, "fsck --repair went on while an owner's lock was held")
        try held.end()  // nothing staged: its locks go
        if early == nil { #expect(reap(same, within: 20) == 0) }
        #expect(reap(repair, within: 20) == 0)
        #expect(tmp.json(["tasks", "show", tasks[0]])["status"] as? String == "succeeded")
        #expect(try spool.fsck(repair: false).findings.isEmpty)
    }

    @Test("under an owner's shared lock an older job of that owner ends at once; the end of the job its link names, and a new job, wait")
    func oneOwnersJobsEndSideBySide() throws {
        let (tmp, spool, held, tasks) = try holdingOwnerLock(owners: ["a", "a"], shared: true)
        let ending = clawflow(tmp, "tasks set \(tasks[0]) --status succeeded")
        #expect(reap(ending, within: 20) == 0, "the end of a job the owner's link does not name waited for the shared lock")
        let linked = clawflow(tmp, "tasks set \(tasks[1]) --status succeeded")
        let created = clawflow(tmp, "tasks add --owner a --runtime cron")
        let linkedEarly = reap(linked, within: 1)
        let createdEarly = reap(created, within: 0.2)
        #expect(linkedEarly == nil, "the end of the job the owner's link names went on under a shared lock")
        #expect(createdEarly == nil, "a new job of the owner went on under a shared lock")
        try held.end()
        if linkedEarly == nil { #expect(reap(linked, within: 20) == 0) }
        if createdEarly == nil { #expect(reap(created, within: 20) == 0) }
        let report = try spool.fsck(repair: false)
        #expect(report.findings.isEmpty, "\(report.findings)")
    }

    @Test("8 owners claiming one chosen task id at once: exactly one gets it, the others are refused, and fsck is clean")
    func oneClaimWins() throws {
        let tmp = TemporarySpool()
        let id = Spool.newId()
        let script = #""$CLAWFLOW" --spool "$SPOOL" tasks add --owner "o-$W" --runtime cron --task-id "$ID" >/dev/null 2>"$SPOOL.err-$W""#
        let pids = (1...8).map { w in spawnShell(script, environment: ["CLAWFLOW": Clawflow.binary, "SPOOL": tmp.path, "ID": id, "W": String(w)]) }
        let statuses = pids.map { reap($0) }
        #expect(statuses.filter { $0 == 0 }.count == 1, "\(statuses)")
        for w in 1...8 where statuses[w - 1] != 0 {
            let err = (try? String(contentsOfFile: tmp.path + ".err-\(w)", encoding: .utf8)) ?? ""
            #expect(err.contains("already used"), "\(err)")
            unlink(tmp.path + ".err-\(w)")
        }
        let spool = try Spool.open(at: FilePath(tmp.path))
        #expect(try spool.flowIds().count == 1)
        #expect(try spool.fsck(repair: false).findings.isEmpty)
    }
}

@Suite("Crashes at any instant", .serialized)
struct CrashTests {
    @Test("200 writers killed with SIGKILL at random moments leave a spool fsck accepts, with every acknowledged write present")
    func killedWriters() throws {
        let tmp = TemporarySpool()
        let acks = tmp.parent + "/acks"
        #expect(FileManager.default.createFile(atPath: acks, contents: nil))
        let managed = tmp.value(["flows", "create", "--owner", "crash-managed", "--goal", "g", "--controller", "c", "--running"])
        // Each writer does several writes and acknowledges each one after clawflow reported it done.
        let script = """
            id=$("$CLAWFLOW" --spool "$SPOOL" tasks add --owner "crash-$(( N % 7 ))" --runtime cron --status running) || exit 0
            echo "running $id" >> "$ACKS"
            "$CLAWFLOW" --spool "$SPOOL" tasks set "$id" --status succeeded >/dev/null || exit 0
            echo "succeeded $id" >> "$ACKS"
            lid=$("$CLAWFLOW" --spool "$SPOOL" tasks add "$FLOW" --runtime worker --status running) || exit 0
            echo "running $lid" >> "$ACKS"
            "$CLAWFLOW" --spool "$SPOOL" tasks set "$lid" --status failed >/dev/null || exit 0
            echo "failed $lid" >> "$ACKS"
            """
        var generator = SystemRandomNumberGenerator()
        for n in 0..<200 {
            let pid = spawnShell(script, environment: ["CLAWFLOW": Clawflow.binary, "SPOOL": tmp.path, "ACKS": acks, "FLOW": managed, "N": String(n)])
            usleep(UInt32.random(in: 0...250_000, using: &generator))
            kill(-pid, SIGKILL)
            reap(pid)
        }
        let spool = try Spool.open(at: FilePath(tmp.path))
        let report = try spool.fsck(repair: false)
        #expect(report.findings.isEmpty, "fsck after the crashes: \(report.findings)")
        // Every acknowledged write is there (a later write may have moved a task further).
        var acknowledged: [String: TaskStatus] = [:]
        for line in try String(contentsOfFile: acks, encoding: .utf8).split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let status = TaskStatus(rawValue: String(parts[0])) else { continue }
            acknowledged[String(parts[1])] = status
        }
        #expect(acknowledged.count > 20, "too few writes completed to test anything: \(acknowledged.count)")
        for (taskId, status) in acknowledged {
            let (flowId, _) = try spool.resolveTask(taskId)
            let task = try spool.readTask(flowId: flowId, taskId: taskId)
            let reached = task.status == status || (status == .running && task.status.isTerminal)
            #expect(reached, "task \(taskId) acknowledged \(status.rawValue) but is \(task.status.rawValue)")
        }
        // Every task that exists is reachable through the index and its flow agrees with it.
        let repaired = try spool.fsck(repair: true)
        #expect(repaired.findings.isEmpty)
        let after = try spool.fsck(repair: false)
        #expect(after.notes.isEmpty, "\(after.notes)")
    }
}

@Suite("A writer killed at every durable step")
struct InjectedCrashTests {
    /// Commands that write, each run under strace, which kills it at the N-th call of one syscall.
    static let syscalls = ["fsync", "renameat", "renameat2", "fdatasync", "symlinkat", "mkdirat", "write"]

    @Test("killing a writer at each fsync, rename, link and write leaves a spool fsck accepts", arguments: syscalls)
    func killAtEveryStep(syscall: String) throws {
        let tmp = TemporarySpool()
        let managed = tmp.value(["flows", "create", "--owner", "inj", "--goal", "g", "--controller", "c", "--running"])
        var killed = 0
        for n in 1...7 {
            let task = tmp.value(["tasks", "add", "--owner", "inj-\(n % 3)", "--runtime", "cron", "--status", "running"])
            let writes: [[String]] = [
                ["tasks", "set", task, "--status", "succeeded"],
                ["tasks", "add", "--owner", "inj-\(n % 3)", "--runtime", "cron"],
                ["tasks", "add", managed, "--runtime", "worker", "--status", "running"],
                ["flows", "cancel", "inj-\(n % 3)"],
            ]
            // Three drops for an ingest pass to take together (one barrier set for all three).
            for k in 0..<3 {
                let name = "drop-\(n)-\(k)"
                let body = #"{"kind":"task","ownerKey":"drop-\#(k)-\#(n)","runtime":"cron","runId":"\#(name)"}"#
                try body.write(toFile: tmp.file("incoming/tmp/\(name)"), atomically: false, encoding: .utf8)
                #expect(rename(tmp.file("incoming/tmp/\(name)"), tmp.file("incoming/new/\(name)")) == 0)
            }
            for args in writes + [["ingest"]] {
                let strace = Process()
                strace.executableURL = URL(fileURLWithPath: "/usr/bin/strace")
                strace.arguments =
                    [
                        "-f", "-o", "/dev/null", "-e", "trace=\(syscall)", "-e", "inject=\(syscall):signal=KILL:when=\(n)", "--", Clawflow.binary, "--spool",
                        tmp.path,
                    ] + args
                strace.standardOutput = FileHandle.nullDevice
                strace.standardError = FileHandle.nullDevice
                try strace.run()
                strace.waitUntilExit()
                if strace.terminationStatus != 0 { killed += 1 }
                let report = try Spool.open(at: FilePath(tmp.path)).fsck(repair: false)
                #expect(report.findings.isEmpty, "after killing \(args) at \(syscall) #\(n): \(report.findings)")
            }
        }
        #expect(killed > 0, "strace never killed a writer at \(syscall)")
        // Every drop is applied exactly once, however its passes were cut short.
        let last = tmp.run(["ingest"])
        #expect(last.status == 0, "\(last.stdout)\(last.stderr)")
        let spool = try Spool.open(at: FilePath(tmp.path))
        let dropped = try spool.allTasks().compactMap(\.runId).filter { $0.hasPrefix("drop-") }
        #expect(dropped.count == 21 && Set(dropped).count == 21, "\(dropped.sorted())")
        #expect(names(tmp.file("incoming/new")).isEmpty && names(tmp.file("incoming/claimed")).isEmpty)
    }
}
