import ClawflowTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

extension TemporarySpool {
    /// The raw lines of a flow's events.jsonl.
    func eventLines(_ flowId: String) -> [String] {
        (text("flows/\(flowId)/events.jsonl") ?? "").split(separator: "\n").map(String.init)
    }

    /// A spool with two mirrored flows and a managed one, each with a few events: alice's task
    /// runs and succeeds, bob's managed flow gets a task and a cancel request, carol's task is
    /// added last. Returns the flow ids and alice's task id.
    func threeFlows() -> (alice: String, bob: String, carol: String, aliceTask: String) {
        let a = addTask(owner: "alice", status: "running", ["--label", "nightly"])
        let bob = createFlow(owner: "bob", goal: "summarise")
        linkTask(to: bob, runtime: "subagent")
        value(["tasks", "set", a.task, "--status", "succeeded"])
        _ = run(["flows", "cancel", bob])  // exits 1: the linked task is still active
        let carol = addTask(owner: "carol")
        return (a.flow, bob, carol.flow, a.task)
    }
}

/// The output line for a stored event line: the stored text with `"flowId":"<id>",` put in
/// its sorted place (every event has `source`, which sorts after `flowId`).
private func stripFlowId(_ line: String, _ flowId: String) -> String {
    line.replacingOccurrences(of: "\"flowId\":\"\(flowId)\",", with: "")
}

@Suite("clawflow events")
struct EventsHistoryTests {
    @Test("--json prints every stored event once, plus flowId, ordered by at, then flow id, then line")
    func jsonHistory() throws {
        let spool = TemporarySpool()
        let f = spool.threeFlows()
        let r = spool.run(["events", "--json"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(r.stdout.hasSuffix("\n"))
        let out = lines(r.stdout)
        let stored = [f.alice, f.bob, f.carol].flatMap { id in spool.eventLines(id).enumerated().map { (id, $0.offset, $0.element) } }
        #expect(out.count == stored.count)
        #expect(
            stored.count == 4 + 4 + 2,
            "created, linked, status of the task and of the flow; created, linked, cancel of the task and of the flow; created, linked")
        var previous: (at: String, flow: String, line: Int)?
        var seen: Set<String> = []
        for line in out {
            let object = try #require(jsonObject(line), "not a JSON object: \(line)")
            let flow = try #require(object["flowId"] as? String)
            let at = try #require(object["at"] as? String)
            #expect(object["event"] is String)
            #expect(object["source"] as? String == "cli")
            // Exactly the stored line with flowId added: compact, keys sorted.
            let original = stripFlowId(line, flow)
            let index = try #require(spool.eventLines(flow).firstIndex(of: original), "\(line) is not a stored line plus flowId")
            #expect(!seen.contains(flow + original))
            seen.insert(flow + original)
            if let p = previous {
                #expect((p.at, p.flow, p.line) < (at, flow, index), "out of order: \(line)")
            }
            previous = (at, flow, index)
        }
        #expect(seen.count == stored.count)
    }

    @Test("text prints one readable line per event, with time, flow id, kind, details, subject and source")
    func textHistory() throws {
        let spool = TemporarySpool()
        let f = spool.threeFlows()
        let r = spool.run(["events"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        let out = lines(r.stdout)
        #expect(out.count == lines(spool.run(["events", "--json"]).stdout).count)
        #expect(!hasControlCharacters(r.stdout))
        let events = spool.events(f.alice)
        let taskStatus = try #require(events.first { $0["event"] as? String == "status" && $0["taskId"] != nil })
        let at = try #require(taskStatus["at"] as? String)
        #expect(out.contains("\(at)  \(f.alice)  status  running -> succeeded  (task \(f.aliceTask))  [cli]"))
        #expect(out.contains("\(at)  \(f.alice)  status  running -> succeeded  (flow, rev 1)  [cli]"))
        let created = try #require(events.first?["at"] as? String)
        #expect(out.contains("\(created)  \(f.alice)  created  mirrored flow, running  (owner alice)  [cli]"))
        #expect(out.contains("\(created)  \(f.alice)  linked  cron task, running  (task \(f.aliceTask))  [cli]"))
        #expect(out.contains { $0.contains("  \(f.bob)  created  managed flow, queued  (owner bob)  [cli]") })
        #expect(out.contains { $0.contains("  \(f.bob)  cancel  requested  (flow)  [cli]") })
        #expect(out.contains { $0.contains("  \(f.bob)  linked  subagent task, queued  (task ") })
        // Every line starts with the time and the flow id, in the order of --json.
        let json = lines(spool.run(["events", "--json"]).stdout).compactMap(jsonObject)
        for (line, object) in zip(out, json) {
            #expect(line.hasPrefix("\(object["at"] as? String ?? "")  \(object["flowId"] as? String ?? "")  \(object["event"] as? String ?? "")"))
        }
    }

    @Test("ignored reports, unknown kinds and extra fields are readable, and record strings are sanitised")
    func otherKinds() throws {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "dave", status: "succeeded")
        #expect(spool.run(["tasks", "set", t.task, "--status", "running"]).status == 1)
        let log = spool.file("flows/\(t.flow)/events.jsonl")
        let extra = """
            {"at":"2099-01-01T00:00:00.000Z","event":"repair","source":"fsck","what":"re-derived\\u001b[31m"}
            {"at":"2099-01-01T00:00:00.001Z","event":"drop","name":"job-1.json","repeat":true,"source":"watcher"}
            {"at":"2099-01-01T00:00:00.002Z","event":"pruned","reason":"ended 7 days ago","source":"maintenance"}
            {"at":"2099-01-01T00:00:00.003Z","event":"teleported","source":"cli","where":"mars"}
            {"at":"2099-01-01T00:00:00.004Z","event":"cancel","note":"by hand","source":"cli"}

            """
        let handle = try #require(FileHandle(forWritingAtPath: log))
        handle.seekToEndOfFile()
        handle.write(Data(extra.utf8))
        try handle.close()
        let r = spool.run(["events", "--flow", t.flow])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(!hasControlCharacters(r.stdout))
        let out = lines(r.stdout)
        #expect(out.count == 8)
        guard out.count == 8 else { return }
        #expect(out[2].hasSuffix("  \(t.flow)  ignored  task is already succeeded; running was not applied  (task \(t.task))  [cli]"))
        #expect(out[3] == "2099-01-01T00:00:00.000Z  \(t.flow)  repair  re-derived?[31m  [fsck]")
        #expect(out[4] == "2099-01-01T00:00:00.001Z  \(t.flow)  drop  repeat of job-1.json, not applied again  [watcher]")
        #expect(out[5] == "2099-01-01T00:00:00.002Z  \(t.flow)  pruned  ended 7 days ago  (flow)  [maintenance]")
        #expect(
            out[6]
                == "2099-01-01T00:00:00.003Z  \(t.flow)  {\"at\":\"2099-01-01T00:00:00.003Z\",\"event\":\"teleported\",\"source\":\"cli\",\"where\":\"mars\"}")
        #expect(out[7] == "2099-01-01T00:00:00.004Z  \(t.flow)  cancel  requested  note=\"by hand\"  (flow)  [cli]")
    }

    @Test("--flow takes an owner key, a flow id or a prefix, and prints only that flow's events")
    func oneFlow() throws {
        let spool = TemporarySpool()
        let f = spool.threeFlows()
        let byOwner = spool.run(["events", "--flow", "alice", "--json"])
        let byId = spool.run(["events", "--flow", f.alice, "--json"])
        let byPrefix = spool.run(["events", "--flow", String(f.alice.prefix(13)), "--json"])
        #expect(byOwner.status == 0 && byId.status == 0 && byPrefix.status == 0)
        #expect(byOwner.stderr == "")
        let out = lines(byId.stdout)
        #expect(out.count == spool.eventLines(f.alice).count)
        #expect(out.map { stripFlowId($0, f.alice) } == spool.eventLines(f.alice), "one flow: line order")
        #expect(byOwner.stdout == byId.stdout)
        #expect(byPrefix.stdout == byId.stdout)
        let text = spool.run(["events", "--flow", "bob"])
        #expect(text.status == 0)
        #expect(lines(text.stdout).count == spool.eventLines(f.bob).count)
        #expect(lines(text.stdout).allSatisfy { $0.contains("  \(f.bob)  ") })
    }

    @Test("--flow with a lookup that finds nothing exits 1 with the not-found message")
    func notFound() {
        let spool = TemporarySpool()
        spool.addTask(owner: "alice")
        let r = spool.run(["events", "--flow", "nobody"])
        #expect(r.status == 1)
        #expect(r.stdout == "")
        #expect(r.stderr == "clawflow: " + flowNotFound("nobody") + "\n")
        let j = spool.run(["events", "--flow", "nobody", "--json"])
        #expect(j.status == 1)
        #expect(errorField(jsonObject(j.stdout), "code") == "not_found")
        #expect(errorField(jsonObject(j.stdout), "message") == flowNotFound("nobody"))
        let missing = TemporarySpool()
        let m = missing.run(["events", "--flow", "nobody"])
        #expect(m.status == 1)
        #expect(m.stderr.contains(flowNotFound("nobody")))
        #expect(!missing.exists)
    }

    @Test("a missing spool prints nothing, exits 0 and is not created")
    func missingSpool() {
        let spool = TemporarySpool()
        for extra in [[], ["--json"]] {
            let r = spool.run(["events"] + extra)
            #expect(r.status == 0)
            #expect(r.stdout == "")
            #expect(r.stderr == "")
        }
        #expect(!spool.exists)
    }

    @Test("a corrupt line in the middle is reported with its path and line number, the rest is printed, exit 1")
    func corruptLine() throws {
        let spool = TemporarySpool()
        let f = spool.threeFlows()
        var stored = spool.eventLines(f.alice)
        #expect(stored.count == 4)
        stored[1] = "{\"at\": oops"
        try (stored.joined(separator: "\n") + "\n").write(toFile: spool.file("flows/\(f.alice)/events.jsonl"), atomically: false, encoding: .utf8)
        let total = [f.alice, f.bob, f.carol].map { spool.eventLines($0).count }.reduce(0, +)
        let path = spool.file("flows/\(f.alice)/events.jsonl")
        for json in [false, true] {
            let r = spool.run(["events"] + (json ? ["--json"] : []))
            #expect(r.status == 1)
            let errors = lines(r.stderr)
            #expect(errors.count == 2)
            #expect(errors.first?.contains(path + " line 2 ") == true, "\(r.stderr)")
            #expect(errors.last?.contains("1 line of the event log could not be read") == true)
            #expect(lines(r.stdout).count == total - 1)
            if json {
                // stdout stays JSON Lines: no error document after the events.
                #expect(lines(r.stdout).allSatisfy { jsonObject($0)?["flowId"] is String })
            }
        }
    }

    @Test("a last line without its newline (a write in progress) is skipped silently")
    func tornLastLine() throws {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "erin")
        let handle = try #require(FileHandle(forWritingAtPath: spool.file("flows/\(t.flow)/events.jsonl")))
        handle.seekToEndOfFile()
        handle.write(Data("{\"at\":\"2026-11-30T01:21:25.355Z\",\"ev".utf8))
        try handle.close()
        let r = spool.run(["events", "--json"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(lines(r.stdout).count == 2)
    }

    @Test("a symlink in place of events.jsonl is reported, not followed")
    func symlinkedLog() throws {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "frank")
        let secret = spool.parent + "/secret.jsonl"
        try "{\"at\":\"x\",\"event\":\"secret\",\"source\":\"cli\"}\n".write(toFile: secret, atomically: false, encoding: .utf8)
        let log = spool.file("flows/\(t.flow)/events.jsonl")
        try FileManager.default.removeItem(atPath: log)
        try FileManager.default.createSymbolicLink(atPath: log, withDestinationPath: secret)
        let r = spool.run(["events"])
        #expect(r.status == 1)
        #expect(!r.stdout.contains("secret"))
        #expect(r.stderr.contains("\(log) is a symlink"))
    }

    @Test("--help explains the command with an example")
    func help() {
        let r = Clawflow.run(["events", "--help"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("Example"))
        #expect(r.stdout.contains("--follow"))
        #expect(r.stdout.contains("--flow <lookup>"))
    }
}

/// A running `clawflow events --follow`, its output collected as it arrives.
private final class Follower {
    let process = Process()
    private let stdout = Pipe()
    private let stderr = Pipe()
    private let collected = Collected()

    private final class Collected: Sendable {
        let out = Mutex<[UInt8]>([])
        let err = Mutex<[UInt8]>([])
    }

    init(_ spool: TemporarySpool, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: Clawflow.binary)
        process.arguments = ["--spool", spool.path, "events", "--follow"] + arguments
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = "1"
        env.removeValue(forKey: "CLAWFLOW_SPOOL")
        process.environment = env
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let collected = collected
        for (pipe, isOut) in [(stdout, true), (stderr, false)] {
            let handle = pipe.fileHandleForReading
            DispatchQueue.global().async {
                while true {
                    let data = handle.availableData
                    if data.isEmpty { return }
                    if isOut {
                        collected.out.withLock { $0.append(contentsOf: data) }
                    } else {
                        collected.err.withLock { $0.append(contentsOf: data) }
                    }
                }
            }
        }
    }

    /// The complete lines printed so far.
    var lines: [String] {
        let bytes = collected.out.withLock { $0 }
        guard let end = bytes.lastIndex(of: 0x0A) else { return [] }
        return String(decoding: bytes[...end], as: UTF8.self).split(separator: "\n").map(String.init)
    }

    /// What went to stderr so far.
    var errors: String { String(decoding: collected.err.withLock { $0 }, as: UTF8.self) }

    /// Waits until `ready` holds for the lines printed (true), or `seconds` pass (false).
    func waitFor(seconds: Double = 5, _ ready: ([String]) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if ready(lines) { return true }
            usleep(20_000)
        }
        return ready(lines)
    }

    /// Sends `signal` and waits up to `seconds` for the exit; returns the exit status and the time taken (nil: still running).
    func stop(_ signal: Int32 = SIGTERM, seconds: Double = 3) -> (status: Int32, elapsed: Double)? {
        let start = Date()
        kill(process.processIdentifier, signal)
        while process.isRunning, Date().timeIntervalSince(start) < seconds { usleep(10_000) }
        guard !process.isRunning else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        process.waitUntilExit()
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return (status, Date().timeIntervalSince(start))
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

@Suite("clawflow events --follow")
struct EventsFollowTests {
    /// The parsed JSON lines that match a predicate.
    private static func matching(_ lines: [String], _ predicate: ([String: Any]) -> Bool) -> [[String: Any]] {
        lines.compactMap(jsonObject).filter(predicate)
    }

    @Test("prints the history, then new events of existing and new flows as they come, and exits 0 on SIGTERM")
    func follow() throws {
        let spool = TemporarySpool()
        let a = spool.addTask(owner: "alice", status: "running")
        let follower = try Follower(spool, ["--json"])
        #expect(follower.waitFor { $0.count == 2 }, "history: \(follower.lines) \(follower.errors)")

        // A change to an existing flow.
        spool.value(["tasks", "set", a.task, "--status", "succeeded"])
        #expect(follower.waitFor { Self.matching($0) { $0["event"] as? String == "status" }.count == 2 }, "\(follower.lines)")

        // A flow created after the command started.
        let b = spool.addTask(owner: "bob")
        #expect(follower.waitFor { Self.matching($0) { $0["flowId"] as? String == b.flow }.count == 2 }, "\(follower.lines)")

        // A line being written is printed once it is complete, and only then.
        let log = try #require(FileHandle(forWritingAtPath: spool.file("flows/\(b.flow)/events.jsonl")))
        log.seekToEndOfFile()
        log.write(Data("{\"at\":\"2099-01-01T00:00:00.000Z\",\"event\":\"repair\",".utf8))
        #expect(!follower.waitFor(seconds: 0.6) { $0.contains { $0.contains("2099-01-01") } }, "a torn line must not be printed")
        log.write(Data("\"source\":\"fsck\",\"what\":\"test\"}\n".utf8))
        try log.close()
        #expect(follower.waitFor { $0.contains { $0.contains("2099-01-01") } }, "\(follower.lines)")

        let all = follower.lines
        #expect(all.count == 2 + 2 + 2 + 1)
        for line in all {
            let object = jsonObject(line)
            #expect(object?["flowId"] is String, "\(line)")
            if let flow = object?["flowId"] as? String {
                #expect(spool.eventLines(flow).contains(stripFlowId(line, flow)), "printed once, exactly as stored: \(line)")
            }
        }
        #expect(Set(all).count == all.count, "no event printed twice")

        let end = try #require(follower.stop(SIGTERM))
        #expect(end.status == 0)
        #expect(end.elapsed < 1.5)
        #expect(follower.errors == "")
    }

    @Test("--flow follows only that flow, text mode; SIGINT ends it with exit 0")
    func followOneFlow() throws {
        let spool = TemporarySpool()
        let a = spool.addTask(owner: "alice", status: "running")
        let follower = try Follower(spool, ["--flow", "alice"])
        #expect(follower.waitFor { $0.count == 2 }, "\(follower.lines) \(follower.errors)")
        let other = spool.addTask(owner: "bob")
        spool.value(["tasks", "set", a.task, "--status", "failed"])
        #expect(follower.waitFor { $0.contains { $0.contains("status  running -> failed  (flow, rev 1)") } }, "\(follower.lines)")
        let all = follower.lines
        #expect(all.count == 4)
        #expect(all.allSatisfy { $0.contains("  \(a.flow)  ") })
        #expect(!all.contains { $0.contains(other.flow) })
        let end = try #require(follower.stop(SIGINT))
        #expect(end.status == 0)
        #expect(end.elapsed < 1.5)
        #expect(follower.errors == "")
    }

    @Test("on a spool that does not exist yet it waits for it without creating it, then follows")
    func followMissingSpool() throws {
        let spool = TemporarySpool()
        let follower = try Follower(spool, ["--json"])
        usleep(300_000)
        #expect(!spool.exists, "following must not create the spool")
        let t = spool.addTask(owner: "late")
        #expect(follower.waitFor { Self.matching($0) { $0["flowId"] as? String == t.flow }.count == 2 }, "\(follower.lines) \(follower.errors)")
        let end = try #require(follower.stop(SIGTERM))
        #expect(end.status == 0)
        #expect(follower.errors == "")
    }

    @Test("a corrupt line is reported on stderr and following goes on")
    func followCorruptLine() throws {
        let spool = TemporarySpool()
        let a = spool.addTask(owner: "alice", status: "running")
        let follower = try Follower(spool, ["--json"])
        #expect(follower.waitFor { $0.count == 2 })
        let handle = try #require(FileHandle(forWritingAtPath: spool.file("flows/\(a.flow)/events.jsonl")))
        handle.seekToEndOfFile()
        handle.write(Data("not json\n".utf8))
        try handle.close()
        spool.value(["tasks", "set", a.task, "--status", "succeeded"])
        #expect(follower.waitFor(seconds: 20) { $0.count == 4 }, "\(follower.lines) \(follower.errors)")
        // stderr is read on its own pipe: it may come in after the lines printed on stdout.
        let report = spool.file("flows/\(a.flow)/events.jsonl") + " line 3 "
        #expect(follower.waitFor(seconds: 20) { _ in follower.errors.contains(report) }, "\(follower.errors)")
        #expect(lines(follower.errors).count == 1, "reported once: \(follower.errors)")
        let end = try #require(follower.stop(SIGTERM))
        #expect(end.status == 0)
    }
}
