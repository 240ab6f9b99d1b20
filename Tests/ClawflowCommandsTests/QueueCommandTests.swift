import ClawflowTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

@Suite("Queues: slots, order, hand-off without a watcher", .serialized)
struct QueueCommandTests {

    func waitAllEnded(_ tmp: TemporarySpool, _ flows: [String], seconds: Double = 30) {
        for flow in flows { waitForFlow(tmp, flow, seconds: seconds, until: isEnded) }
    }

    /// Waits until `flows` have ended, reading their manifests, not with clawflow commands:
    /// each of those hands the slots on after its own work, and could start a job in a process
    /// of its own where a test watches which process does.
    func waitAllEndedInFiles(_ tmp: TemporarySpool, _ flows: [String], seconds: Double = 30) {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline, !flows.allSatisfy({ tmp.manifest($0)["endedAt"] != nil }) { usleep(20_000) }
    }

    @Test("a queue with 2 slots never runs more than 2 of its jobs at once, and runs them all")
    func slotsBoundConcurrency() throws {
        let tmp = TemporarySpool()
        let dir = tmp.parent + "/live"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        #expect(tmp.run(["queue", "set", "two", "--slots", "2"]).status == 0)
        let script = "touch \(dir)/$CLAWFLOW_FLOW_ID; ls \(dir) | wc -l >> \(tmp.parent)/counts; sleep 0.2; rm \(dir)/$CLAWFLOW_FLOW_ID"
        let flows = (0..<6).map { tmp.startJob(["--owner", "j\($0)", "--queue", "two", "--", "sh", "-c", script]).flow }
        let shown = tmp.json(["queue", "show", "two"])
        #expect((shown["running"] as? Int ?? 0) <= 2)
        waitAllEnded(tmp, flows)
        let counts = fileLines(tmp.parent + "/counts").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        #expect(counts.count == 6)
        #expect(counts.allSatisfy { $0 <= 2 }, "more than 2 ran at once: \(counts)")
        for flow in flows { #expect(tmp.manifest(flow)["status"] as? String == "succeeded") }
        #expect(tmp.json(["queue", "show", "two"])["queued"] as? Int == 0)
    }

    @Test("the hand-off of a full queue reads no flow: each running job's supervisor holds the lock of its entry")
    func fullQueueReadsNothing() throws {
        let (tmp, gate, out) = gatedQueue("two", slots: 2)
        let running = (0..<2).map { tmp.startJob(["--owner", "r\($0)", "--queue", "two"] + gatedCommand(gate, out, "r\($0)")).flow }
        let waiting = (0..<5).map { tmp.startJob(["--owner", "w\($0)", "--queue", "two", "--", "true"]).flow }
        for flow in running { waitForFlow(tmp, flow) { $0["status"] as? String == "running" } }
        // queue list reads only the queue's directories; the hand-off after it is traced.
        let trace = tmp.parent + "/trace"
        let r = runProgram("/usr/bin/strace", ["-f", "-o", trace, "-e", "trace=openat", "--", Clawflow.binary, "--spool", tmp.path, "queue", "list"])
        #expect(r.status == 0, "\(r.stderr)")
        let opened = fileLines(trace).filter { line in (running + waiting).contains { line.contains($0) } }
        // A flow is read through its directory (O_DIRECTORY); an entry is a plain file.
        #expect(opened.filter { $0.contains("O_DIRECTORY") }.isEmpty, "flows read: \(opened)")
        #expect(opened.count == 2, "each running entry opened once, to try its lock: \(opened)")
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        waitAllEnded(tmp, running + waiting)
        for flow in running + waiting { #expect(tmp.manifest(flow)["status"] as? String == "succeeded") }
    }

    @Test("a job with a free slot and nothing ahead of it is entered straight into running/; one behind a full queue waits in waiting/")
    func entryGoesWhereTheJobStands() throws {
        let (tmp, gate, out) = gatedQueue("one", slots: 1)
        func traced(_ arguments: [String]) -> (flow: String, lines: [String]) {
            let trace = tmp.parent + "/trace"
            let r = runProgram(
                "/usr/bin/strace",
                ["-f", "-qq", "-y", "-o", trace, "-e", "trace=openat,renameat", "--", Clawflow.binary, "--spool", tmp.path, "run"] + arguments)
            #expect(r.status == 0, "\(r.stderr)")
            return (String(r.stdout.split(separator: " ").first ?? ""), fileLines(trace))
        }
        // (strace follows the supervisor too: the traced jobs must end by themselves.)
        let first = traced(["--owner", "a", "--queue", "one", "--", "true"])
        #expect(first.lines.contains { $0.contains("O_CREAT") && $0.contains("/queues/one/running>") && $0.contains(first.flow) }, "\(first.lines)")
        #expect(!first.lines.contains { $0.contains("renameat(") && $0.contains("/queues/one/") }, "\(first.lines)")
        let gated = tmp.startJob(["--owner", "g", "--queue", "one"] + gatedCommand(gate, out, "g")).flow
        waitForFlow(tmp, gated) { $0["status"] as? String == "running" }
        let second = traced(["--owner", "b", "--queue", "one", "--", "true"])
        #expect(second.lines.contains { $0.contains("O_CREAT") && $0.contains("/queues/one/waiting>") && $0.contains(second.flow) }, "\(second.lines)")
        #expect(tmp.json(["queue", "show", "one"])["queued"] as? Int == 1)
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        waitAllEnded(tmp, [first.flow, gated, second.flow])
        for flow in [first.flow, gated, second.flow] { #expect(tmp.manifest(flow)["status"] as? String == "succeeded") }
        #expect(tmp.run(["fsck"]).status == 0)
    }

    @Test("a supervisor that takes the next job over flushes its move into running/ with the job's running record, before its command starts")
    func takenOverMoveFlushedBeforeStart() throws {
        let (tmp, gate, out) = gatedQueue("one", slots: 1)
        let trace = tmp.parent + "/trace"
        // The first job's run and its supervisor, traced in the background.
        let gated = gatedCommand(gate, out, "a").map { "'" + $0 + "'" }.joined(separator: " ")
        let script =
            "strace -f -qq -y -o \(trace) -e trace=renameat,fsync,execve \(Clawflow.binary) --spool \(tmp.path) run --owner a --queue one \(gated) </dev/null >\(tmp.parent)/a.out 2>&1 &"
        #expect(system(script) == 0)  // (a Process would wait for the pipes strace keeps open)
        var first = ""
        for _ in 0..<200 where first.isEmpty {
            usleep(20_000)
            first = (try? String(contentsOfFile: tmp.parent + "/a.out", encoding: .utf8))?.split(separator: " ").first.map(String.init) ?? ""
        }
        let second = tmp.startJob(["--owner", "b", "--queue", "one", "--", "true"]).flow
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        // (A command's hand-off took the second job before the first job's supervisor did,
        // once in a full run of the tests, when this waited with flows show.)
        waitAllEndedInFiles(tmp, [first, second])
        for _ in 0..<200 where !processes(containing: "strace -f -qq -y -o \(trace)").isEmpty { usleep(20_000) }
        let lines = fileLines(trace)
        let move = try #require(lines.firstIndex { $0.contains("renameat(") && $0.contains("/queues/one/waiting>") && $0.contains(second) }, "\(lines)")
        let exec = try #require(lines.firstIndex { $0.contains("execve(") && $0.contains("\"true\"") }, "\(lines)")
        // Both directories flushed after the move (by any thread of the supervisor), before the command's exec.
        for dir in ["/queues/one/running>", "/queues/one/waiting>"] {
            let flush = lines[move...].firstIndex { $0.contains("fsync(") && $0.contains(dir) }
            #expect(flush.map { $0 < exec } == true, "\(dir): \(lines)")
        }
        for flow in [first, second] { #expect(tmp.manifest(flow)["status"] as? String == "succeeded") }
        #expect(tmp.run(["fsck"]).status == 0)
    }

    @Test("a supervisor whose job ended runs the next waiting job itself: a queue's jobs go through one process, as a worker's")
    func supervisorAdoptsNextJob() throws {
        let (tmp, gate, out) = gatedQueue("one", slots: 1)
        let first = tmp.startJob(["--owner", "first", "--queue", "one"] + gatedCommand(gate, out, "first")).flow
        let rest = (0..<3).map { tmp.startJob(["--owner", "next\($0)", "--queue", "one", "--", "sh", "-c", "echo next\($0) >> \(out)"]).flow }
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        waitAllEndedInFiles(tmp, [first] + rest)
        #expect(fileLines(out) == ["first", "next0", "next1", "next2"])
        let supervisors = ([first] + rest).map { flow -> Int in
            let dir = tmp.file("flows/\(flow)/tasks")
            let file = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).first { $0.hasSuffix(".json") } ?? ""
            return tmp.record("flows/\(flow)/tasks/\(file)")["supervisorPid"] as? Int ?? 0
        }
        #expect(Set(supervisors).count == 1 && supervisors[0] > 1, "one supervisor ran them all: \(supervisors)")
    }

    @Test("waiting jobs start by priority, then in order of arrival, also from 8 concurrent run callers")
    func priorityThenArrival() throws {
        let tmp = TemporarySpool()
        let gate = tmp.parent + "/gate"
        let out = tmp.parent + "/order"
        #expect(tmp.run(["queue", "set", "one", "--slots", "1"]).status == 0)
        let blocker = tmp.startJob(["--owner", "blocker", "--queue", "one"] + gatedCommand(gate, out, "blocker")).flow
        let made = Mutex<[(flow: String, priority: Int, name: String)]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            let priority = i % 2 == 0 ? 0 : 5
            let name = "job\(i)"
            let r = tmp.run(["run", "--owner", name, "--queue", "one", "--priority", String(priority), "--", "sh", "-c", "echo \(name) >> \(out)"])
            let flow = String(r.stdout.split(separator: " ").first ?? "")
            made.withLock { $0.append((flow, priority, name)) }
        }
        let jobs = made.withLock { $0 }
        let queued = tmp.json(["queue", "show", "one"])
        #expect(queued["queued"] as? Int == 8, "\(queued)")
        let expected = jobs.sorted { ($0.priority, $1.flow) > ($1.priority, $0.flow) }.map(\.name)
        let listed = (queued["queuedJobs"] as? [[String: Any]] ?? []).map { $0["ownerKey"] as? String ?? "" }
        #expect(listed == expected, "queue show lists the start order")
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        waitAllEnded(tmp, [blocker] + jobs.map(\.flow))
        #expect(fileLines(out) == ["blocker"] + expected)
    }

    @Test("a sequence holds one slot for all its steps; raising the slots starts waiting jobs at once")
    func sequenceOneSlotAndResize() throws {
        let tmp = TemporarySpool()
        let out = tmp.parent + "/order"
        let gate = tmp.parent + "/gate"
        #expect(tmp.run(["queue", "set", "s", "--slots", "1"]).status == 0)
        let sequence = tmp.startJob([
            "--owner", "seq", "--queue", "s", "--goal", "two steps",
            "--step", "echo step1 >> \(out); sleep 0.2", "--step", "echo step2 >> \(out)",
        ]).flow
        let single = tmp.startJob(["--owner", "single", "--queue", "s", "--", "sh", "-c", "echo single >> \(out)"]).flow
        waitAllEnded(tmp, [sequence, single])
        #expect(fileLines(out) == ["step1", "step2", "single"])

        let held = (0..<3).map { tmp.startJob(["--owner", "h\($0)", "--queue", "s"] + gatedCommand(gate, out, "h\($0)")).flow }
        #expect(tmp.json(["queue", "show", "s"])["running"] as? Int == 1)
        let set = tmp.run(["queue", "set", "s", "--slots", "3"])
        #expect(set.status == 0 && set.stdout == "Queue s: 3 slots, 3 running, 0 queued.\n", "\(set.stdout)")
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        waitAllEnded(tmp, held)
    }

    @Test("cancelling a queued job ends it cancelled without running it; cancelling a running one hands its slot on")
    func cancelHandsOn() throws {
        let tmp = TemporarySpool()
        let out = tmp.parent + "/order"
        let gate = tmp.parent + "/gate"
        #expect(tmp.run(["queue", "set", "c", "--slots", "1"]).status == 0)
        let first = tmp.startJob(["--owner", "first", "--queue", "c"] + gatedCommand(gate, out, "first")).flow
        let second = tmp.startJob(["--owner", "second", "--queue", "c", "--", "sh", "-c", "echo second >> \(out)"]).flow
        let third = tmp.startJob(["--owner", "third", "--queue", "c", "--", "sh", "-c", "echo third >> \(out)"]).flow
        #expect(tmp.manifest(second)["status"] as? String == "queued")
        #expect(tmp.run(["flows", "cancel", second]).status == 0)
        #expect(tmp.manifest(second)["status"] as? String == "cancelled")
        waitForFlow(tmp, first, until: { $0["status"] as? String == "running" })
        #expect(tmp.run(["flows", "cancel", first]).status == 0)
        waitAllEnded(tmp, [first, third])
        #expect(fileLines(out) == ["third"])
        #expect(tmp.manifest(third)["status"] as? String == "succeeded")
    }

    @Test("supervisors killed with SIGKILL at random moments leak no slot: every queued job still runs exactly once")
    func killNineLeaksNoSlot() throws {
        let tmp = TemporarySpool()
        let out = tmp.parent + "/ran"
        #expect(tmp.run(["queue", "set", "k", "--slots", "2"]).status == 0)
        let flows = (0..<12).map { i in
            tmp.startJob(["--owner", "k\(i)", "--queue", "k", "--", "sh", "-c", "echo $CLAWFLOW_FLOW_ID >> \(out); sleep 0.1"]).flow
        }
        var killed = 0
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<40 where killed < 4 {
            usleep(UInt32.random(in: 0...80_000, using: &generator))
            // Those tasks name, and those that have not named themselves yet (before the
            // write that records their command running).
            let supervisors = Array(Set(activeSupervisors(tmp) + supervisorProcesses(of: tmp.path)))
            if let victim = supervisors.randomElement(using: &generator) {
                kill(victim, SIGKILL)
                killed += 1
            }
            tmp.run(["queue", "show", "k"])  // the next clawflow command hands the slot on
        }
        // Any clawflow command hands freed slots on: poll with one until every job has ended.
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let listed = tmp.json(["flows", "list", "--json"])
            let active = (listed["flows"] as? [[String: Any]] ?? []).filter { $0["endedAt"] == nil }
            if active.isEmpty { break }
            usleep(50_000)
        }
        #expect(killed > 0, "no supervisor was caught running")
        let ran = fileLines(out)
        for flow in flows {
            let status = tmp.manifest(flow)["status"] as? String
            let times = ran.filter { $0 == flow }.count
            #expect(status == "succeeded" || status == "lost", "\(flow) ended \(status ?? "-")")
            #expect(times <= 1, "\(flow) ran \(times) times")
            if status == "succeeded" { #expect(times == 1, "\(flow) succeeded without running") }
            if status == "lost" {
                // Only a job whose command had started can be lost (its supervisor died with it).
                let task = (tmp.json(["flows", "show", flow])["tasks"] as? [[String: Any]])?.first
                #expect(task?["pid"] != nil, "a job lost before its command started: \(task ?? [:])")
            }
        }
        #expect(tmp.json(["queue", "show", "k"])["queued"] as? Int == 0)
        #expect(tmp.json(["queue", "show", "k"])["running"] as? Int == 0)
    }

    /// The supervisor pids active command tasks of the spool name, read from the task files,
    /// that are still supervisors (by their process name).
    func activeSupervisors(_ tmp: TemporarySpool) -> [Int32] {
        let flowsDir = tmp.file("flows")
        var pids: [Int32] = []
        for flow in (try? FileManager.default.contentsOfDirectory(atPath: flowsDir)) ?? [] {
            for file in (try? FileManager.default.contentsOfDirectory(atPath: "\(flowsDir)/\(flow)/tasks")) ?? [] where file.hasSuffix(".json") {
                let task = tmp.record("flows/\(flow)/tasks/\(file)")
                guard ["queued", "running"].contains(task["status"] as? String ?? ""), let pid = task["supervisorPid"] as? Int else { continue }
                let comm = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? ""
                if comm.hasPrefix("clawflow-superv") { pids.append(Int32(pid)) }
            }
        }
        return pids
    }

    @Test("bad queue names, slots and priorities are usage errors")
    func usage() {
        let tmp = TemporarySpool()
        #expect(tmp.run(["queue", "set", "Bad Name", "--slots", "1"]).status == 64)
        #expect(tmp.run(["queue", "set", "q", "--slots", "-1"]).status == 64)
        #expect(tmp.run(["run", "--owner", "o", "--queue", "no/pe", "--", "true"]).status == 64)
        #expect(tmp.run(["run", "--owner", "o", "--priority", "10000", "--", "true"]).status == 64)
        let listed = tmp.run(["queue", "list"])
        #expect(listed.status == 0 && listed.stdout.contains("default"))
    }
}
