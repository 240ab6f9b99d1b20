import ClawflowTestSupport
import Foundation
import Glibc
import Testing

/// A spool with one spool-wide hook, `hooks/10-log`, that appends a line per run to a log
/// beside the spool: `event|taskId|from|to|deliveryId|attempt|repeat|exitCode|uid`, and (unless
/// `builtinsOnly`, for the strace tests: a hook that forks would meet the injected faults too)
/// keeps its stdin as `stdin-<deliveryId>-<attempt>.json`.
struct HookFixture {
    let tmp = TemporarySpool()
    var log: String { tmp.parent + "/hook.log" }

    init(builtinsOnly: Bool = false, exit code: Int = 0, extra: String = "") {
        tmp.value(["init"])
        mkdir(tmp.file("hooks"), 0o700)
        let keep = builtinsOnly ? "" : "cat > \(tmp.parent)/stdin-$CLAWFLOW_DELIVERY_ID-$CLAWFLOW_DELIVERY_ATTEMPT.json\n"
        let uid = builtinsOnly ? "-" : "$(id -u)"
        install(
            "10-log",
            """
            #!/bin/sh
            echo "$CLAWFLOW_EVENT|$CLAWFLOW_TASK_ID|$CLAWFLOW_PREVIOUS_STATUS|$CLAWFLOW_STATUS|$CLAWFLOW_DELIVERY_ID|$CLAWFLOW_DELIVERY_ATTEMPT|$CLAWFLOW_DELIVERY_REPEAT|$CLAWFLOW_EXIT_CODE|\(uid)" >> \(log)
            \(keep)\(extra)exit \(code)

            """)
    }

    /// Writes an executable hook into hooks/.
    func install(_ name: String, _ script: String, mode: mode_t = 0o755) {
        _ = FileManager.default.createFile(atPath: tmp.file("hooks/" + name), contents: Data(script.utf8))
        chmod(tmp.file("hooks/" + name), mode)
    }

    /// The hook runs so far, each split at `|`.
    func runs() -> [[String]] { fileLines(log).map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) } }

    /// The deliveries waiting in notify/ (not the failed ones).
    func pending() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: tmp.file("notify"))) ?? []).filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") }
    }

    /// The deliveries in notify/failed/.
    func failed() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: tmp.file("notify/failed"))) ?? []).filter { $0.hasSuffix(".json") } }

    /// Waits until no delivery is pending (the detached deliverers are done), then a moment
    /// more for a hook that would run twice.
    func settle(seconds: Double = 20, sourceLocation: SourceLocation = #_sourceLocation) {
        let end = Date().addingTimeInterval(seconds)
        while !pending().isEmpty, Date() < end { usleep(20_000) }
        #expect(pending().isEmpty, "deliveries still pending: \(pending())", sourceLocation: sourceLocation)
        usleep(300_000)
    }

    /// The `notify` events of a flow.
    func notifyEvents(_ flow: String) -> [[String: Any]] { tmp.events(flow).filter { $0["event"] as? String == "notify" } }
}

/// Whether a process of group `pgid` is left that is not a zombie (an orphan reparented to a
/// process that does not reap stays one).
func groupAlive(_ pgid: Int32) -> Bool {
    let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
    return pids.contains { pid in
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
        let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
        return fields.count > 2 && fields[2] == "\(pgid)" && fields[0] != "Z"
    }
}

@Suite("Notification hooks")
struct HookTests {
    @Test("a spool without hooks and a task without its own records no delivery")
    func nothingWithoutHooks() {
        let tmp = TemporarySpool()
        let (task, _) = tmp.addTask(owner: "quiet", status: "running")
        tmp.value(["tasks", "set", task, "--status", "succeeded"])
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: tmp.file("notify"))) ?? []
        #expect(entries.filter { $0 != "failed" }.isEmpty, "\(entries)")
    }

    static let policies: [(String, [String])] = [
        ("done_only", ["succeeded"]), ("state_changes", ["running", "succeeded", "failed"]), ("silent", []),
    ]

    @Test("a hook runs exactly once per transition its policy tells of", arguments: policies)
    func policy(policy: String, told: [String]) {
        let f = HookFixture()
        let (task, flow) = f.tmp.addTask(owner: "p-\(policy)", status: "queued")
        f.tmp.value(["tasks", "notify", task, policy])
        for status in ["running", "succeeded", "failed"] { f.tmp.value(["tasks", "set", task, "--status", status]) }
        #expect(f.tmp.run(["tasks", "set", task, "--status", "running"]).status == 1, "a report on a final task changes nothing")
        f.settle()
        let runs = f.runs()
        #expect(runs.map { $0[3] } == told, "\(runs)")
        #expect(Set(runs.map { $0[4] }).count == told.count, "one delivery id per transition")
        for run in runs {
            #expect(run[0] == "task_status" && run[1] == task && run[5] == "1" && run[6] == "0")
            let stdin = (try? String(contentsOfFile: "\(f.tmp.parent)/stdin-\(run[4])-1.json", encoding: .utf8)).flatMap(jsonObject)
            #expect(stdin?["taskId"] as? String == task && stdin?["status"] as? String == run[3], "the record as written is the hook's stdin")
        }
        #expect(f.notifyEvents(flow).map { $0["status"] as? String } == told.map { _ in "delivered" })
        #expect(f.tmp.taskRecord(flow, task)["notifyPolicy"] as? String == policy)
    }

    @Test("run --on-finish runs the job's own hook once, in its directory, with its exit code")
    func onFinish() {
        let tmp = TemporarySpool()
        let out = tmp.parent + "/finish.log"
        let (flow, task) = tmp.startJob([
            "--owner", "fin", "--cwd", tmp.parent, "--on-finish", "echo \"$CLAWFLOW_STATUS $CLAWFLOW_EXIT_CODE $PWD\" >> \(out)", "--", "sh", "-c", "exit 3",
        ])
        let end = Date().addingTimeInterval(20)
        while fileLines(out).isEmpty, Date() < end { usleep(20_000) }
        usleep(500_000)
        #expect(fileLines(out) == ["failed 3 \(tmp.parent)"])
        #expect(tmp.taskRecord(flow, task)["notifyCommand"] != nil)
        let events = tmp.events(flow).filter { $0["event"] as? String == "notify" }
        #expect(events.count == 1 && events.first?["hook"] as? String == "job" && events.first?["source"] as? String == "runner")
    }

    @Test("a sequence's --on-finish hook is told once, of the flow's end")
    func sequenceFinish() {
        let tmp = TemporarySpool()
        let out = tmp.parent + "/seq.log"
        let (flow, _) = tmp.startJob([
            "--owner", "seq", "--goal", "two", "--step", "true", "--step", "true", "--on-finish",
            "echo \"$CLAWFLOW_EVENT $CLAWFLOW_STATUS $CLAWFLOW_FLOW_ID\" >> \(out)",
        ])
        let end = Date().addingTimeInterval(20)
        while fileLines(out).isEmpty, Date() < end { usleep(20_000) }
        usleep(500_000)
        #expect(fileLines(out) == ["flow_status succeeded \(flow)"])
    }

    @Test("tasks add --on-change tells of every status change, creation included")
    func onChange() {
        let tmp = TemporarySpool()
        let out = tmp.parent + "/change.log"
        let (task, _) = tmp.addTask(owner: "chg", status: "queued", ["--on-change", "echo \"$CLAWFLOW_PREVIOUS_STATUS>$CLAWFLOW_STATUS\" >> \(out)"])
        tmp.value(["tasks", "set", task, "--status", "running"])
        tmp.value(["tasks", "set", task, "--status", "succeeded"])
        let end = Date().addingTimeInterval(20)
        while fileLines(out).count < 3, Date() < end { usleep(20_000) }
        usleep(300_000)
        #expect(fileLines(out) == [">queued", "queued>running", "running>succeeded"])
    }

    @Test("a hook that hangs is ended at its timeout, with its process group, and recorded")
    func hangingHook() throws {
        let f = HookFixture()
        let pidFile = f.tmp.parent + "/hang.pid"
        f.install("20-hang", "#!/bin/sh\necho $$ > \(pidFile)\nsleep 60 &\nwait\n")
        let env = ["CLAWFLOW_HOOK_TIMEOUT": "1", "CLAWFLOW_HOOK_ATTEMPTS": "1"]
        let (task, flow) = f.tmp.addTask(owner: "hang", status: "running")
        let started = Date()
        #expect(f.tmp.run(["tasks", "set", task, "--status", "succeeded"], environment: env).status == 0)
        #expect(Date().timeIntervalSince(started) < 1, "the write does not wait for its hooks")
        let end = Date().addingTimeInterval(20)
        while f.failed().isEmpty, Date() < end { usleep(50_000) }
        #expect(f.failed().count == 1 && f.pending().isEmpty)
        let events = f.notifyEvents(flow)
        let hung = events.first { $0["hook"] as? String == "hooks/20-hang" }
        #expect(hung?["status"] as? String == "timed_out" && hung?["timedOut"] as? Bool == true, "\(events)")
        #expect(events.contains { $0["hook"] as? String == "hooks/10-log" && $0["status"] as? String == "delivered" }, "the other hook was not held up")
        let pid = Int32((try? String(contentsOfFile: pidFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        #expect(pid > 0 && !groupAlive(pid), "the hook's process group is gone")
        let audit = f.tmp.run(["audit", "--json"])
        #expect(audit.status == 1 && audit.stdout.contains("notify_failed"), "\(audit.stdout)")
    }

    @Test("a hook that fails is retried with back-off and each failure recorded, up to the last run")
    func failingHook() {
        let f = HookFixture(exit: 7, extra: "echo \"boom $CLAWFLOW_DELIVERY_ATTEMPT\" >&2\n")
        let env = ["CLAWFLOW_HOOK_ATTEMPTS": "3", "CLAWFLOW_HOOK_RETRY_DELAY": "0.2"]
        let (task, flow) = f.tmp.addTask(owner: "fail", status: "running")
        f.tmp.run(["tasks", "set", task, "--status", "succeeded"], environment: env)
        let end = Date().addingTimeInterval(20)
        while f.failed().isEmpty, Date() < end { usleep(50_000) }
        let events = f.notifyEvents(flow)
        #expect(events.map { $0["status"] as? String } == ["failed", "failed", "failed"], "\(events)")
        #expect(events.map { $0["exitCode"] as? Int } == [7, 7, 7])
        #expect(events.map { $0["stderr"] as? String } == ["boom 1", "boom 2", "boom 3"])
        #expect(events.map { $0["repeat"] as? Bool } == [nil, true, true])
        #expect(f.runs().map { $0[5] } == ["1", "2", "3"] && Set(f.runs().map { $0[4] }).count == 1)
        #expect(f.failed().count == 1 && f.pending().isEmpty)
        let record = f.tmp.record("notify/failed/" + f.failed()[0])
        #expect(record["status"] as? String == "failed" && (record["lastError"] as? [String: Any])?["exitCode"] as? Int == 7)
        let audit = f.tmp.json(["audit"])
        let findings = (audit["findings"] as? [[String: Any]]) ?? []
        #expect(findings.contains { $0["code"] as? String == "notify_failed" && ($0["message"] as? String)?.contains("boom 3") == true }, "\(findings)")
    }

    @Test("a hook that fails once is delivered on its second run, marked a repeat")
    func recovers() {
        let f = HookFixture(extra: "[ -e \"$CLAWFLOW_SPOOL/../ok\" ] || { touch \"$CLAWFLOW_SPOOL/../ok\"; exit 1; }\n")
        let env = ["CLAWFLOW_HOOK_RETRY_DELAY": "0.2"]
        let (task, flow) = f.tmp.addTask(owner: "again", status: "running")
        f.tmp.run(["tasks", "set", task, "--status", "succeeded"], environment: env)
        f.settle()
        #expect(f.notifyEvents(flow).map { $0["status"] as? String } == ["failed", "delivered"])
        #expect(f.runs().map { $0[6] } == ["0", "1"])
        #expect(f.failed().isEmpty)
    }

    @Test("a drop may name its task's own hook; a hook in hooks/ that is not safe to run is skipped and audited")
    func dropsAndUnsafeHooks() {
        let f = HookFixture()
        f.install("30-writable", "#!/bin/sh\necho bad >> \(f.log)\n", mode: 0o777)
        f.install("40-plain", "#!/bin/sh\necho bad >> \(f.log)\n", mode: 0o644)
        let out = f.tmp.parent + "/drop.log"
        let drop = #"{"kind":"task","ownerKey":"drop-hook","runtime":"cron","status":"succeeded","notifyCommand":"echo dropped $CLAWFLOW_STATUS >> \#(out)"}"#
        _ = FileManager.default.createFile(atPath: f.tmp.file("incoming/new/d1.json"), contents: Data(drop.utf8))
        f.tmp.value(["ingest"])
        f.settle()
        #expect(fileLines(out) == ["dropped succeeded"])
        #expect(f.runs().count == 1, "only the safe spool hook ran: \(f.runs())")
        let findings = (f.tmp.json(["audit"])["findings"] as? [[String: Any]]) ?? []
        #expect(Set(findings.filter { $0["code"] as? String == "hook_ignored" }.compactMap { $0["id"] as? String }) == ["30-writable", "40-plain"])
    }

    @Test("fsck accepts a spool with deliveries in every state and debris of a dead writer")
    func fsckStates() throws {
        let f = HookFixture()
        let (task, _) = f.tmp.addTask(owner: "fsck", status: "running")
        f.tmp.run(["tasks", "set", task, "--status", "succeeded"])
        f.settle()
        _ = FileManager.default.createFile(atPath: f.tmp.file("notify/.01a2.json.999999.ab.tmp"), contents: Data("{".utf8))
        let r = f.tmp.run(["fsck"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
    }
}
