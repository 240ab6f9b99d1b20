import ClawflowTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

/// Polls `flows show <flow> --json` until `done` holds (10 s at most); returns the last flow.
@discardableResult
func waitForFlow(
    _ tmp: TemporarySpool, _ flow: String, seconds: Double = 10, sourceLocation: SourceLocation = #_sourceLocation, until done: ([String: Any]) -> Bool
) -> [String: Any] {
    let deadline = Date().addingTimeInterval(seconds)
    var last: [String: Any] = [:]
    while Date() < deadline {
        if let object = jsonObject(tmp.run(["flows", "show", flow, "--json"]).stdout) {
            last = object
            if done(object) { return object }
        }
        usleep(50_000)
    }
    Issue.record("flow \(flow) did not reach the expected state in \(seconds) s: \(last)", sourceLocation: sourceLocation)
    return last
}

func tasksOf(_ flow: [String: Any]) -> [[String: Any]] { flow["tasks"] as? [[String: Any]] ?? [] }
func isEnded(_ flow: [String: Any]) -> Bool { flow["endedAt"] != nil }

/// The pids of processes whose command line contains `marker`, clawflow's own left out (a
/// supervisor is a fork of `run` and keeps its command line, which names the command).
func processes(containing marker: String) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { Int32($0) }.filter { pid in
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        if data.split(separator: 0).first.map({ String(decoding: $0, as: UTF8.self) }) == Clawflow.binary { return false }
        let text = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
        let state = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.split(separator: ")").last?.split(separator: " ").first
        return text.contains(marker) && state != "Z"
    }
}

/// The supervisors (forks of run, named clawflow-superv) whose command line names `spool`;
/// not their commands, which keep that name from their fork until their exec.
func supervisorProcesses(of spool: String) -> [Int32] {
    func isSupervisorNamed(_ pid: Int32) -> Bool {
        ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "").hasPrefix("clawflow-superv")
    }
    func parent(_ pid: Int32) -> Int32 {
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        return Int32(stat.split(separator: ")").last?.split(separator: " ").dropFirst().first ?? "") ?? 0
    }
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { Int32($0) }.filter { pid in
        guard isSupervisorNamed(pid), !isSupervisorNamed(parent(pid)), let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else {
            return false
        }
        return String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self).contains(spool)
    }
}

@Suite("clawflow run: commands and sequences", .serialized)
struct RunCommandTests {
    @Test("a command that exits 0 succeeds, with its pid, process group, start time and output in its log")
    func success() {
        let tmp = TemporarySpool()
        let (flow, task) = tmp.startJob(["--owner", "s", "--", "sh", "-c", "echo out; echo err >&2"])
        let shown = waitForFlow(tmp, flow, until: isEnded)
        #expect(shown["status"] as? String == "succeeded")
        let t = tasksOf(shown).first ?? [:]
        #expect(t["taskId"] as? String == task)
        #expect(t["status"] as? String == "succeeded" && t["exitCode"] as? Int == 0)
        #expect(t["runtime"] as? String == "cli" && t["command"] as? [String] == ["sh", "-c", "echo out; echo err >&2"])
        for key in ["pid", "pgid", "procStartTime", "supervisorPid", "supervisorStartTime", "startedAt", "endedAt", "logPath", "cwd"] {
            #expect(t[key] != nil, "\(key) missing in \(t)")
        }
        #expect(t["pid"] as? Int == t["pgid"] as? Int, "the command leads its own process group")
        let logs = tmp.run(["logs", task])
        #expect(logs.status == 0 && logs.stdout == "out\nerr\n")
    }

    @Test("a failing command fails with its exit code, a killed one with its signal; --cwd and --timeout apply")
    func failureTimeoutAndCwd() throws {
        let tmp = TemporarySpool()
        let dir = tmp.parent + "/work"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let failing = tmp.startJob(["--owner", "f", "--cwd", dir, "--", "sh", "-c", "pwd; exit 7"])
        let killed = tmp.startJob(["--owner", "k", "--", "sh", "-c", "kill -9 $$"])
        let slow = tmp.startJob(["--owner", "t", "--timeout", "1", "--", "sh", "-c", "sleep 1000 & sleep 1000"])
        let f = waitForFlow(tmp, failing.flow, until: isEnded)
        #expect(f["status"] as? String == "failed")
        #expect(tasksOf(f).first?["exitCode"] as? Int == 7)
        #expect(tmp.run(["logs", failing.task]).stdout == dir + "\n")
        let k = waitForFlow(tmp, killed.flow, until: isEnded)
        #expect(tasksOf(k).first?["signal"] as? String == "SIGKILL" && k["status"] as? String == "failed")
        let t = waitForFlow(tmp, slow.flow, seconds: 15, until: isEnded)
        #expect(tasksOf(t).first?["status"] as? String == "timed_out")
        #expect(t["status"] as? String == "failed")
        let pgid = Int32(tasksOf(t).first?["pgid"] as? Int ?? 0)
        #expect(pgid > 1 && kill(-pgid, 0) != 0 || processes(containing: "sleep 1000").isEmpty, "the timed-out group is ended")
    }

    @Test("a 5-step sequence runs its steps in order, one at a time, and succeeds")
    func sequenceOrder() throws {
        let tmp = TemporarySpool()
        let out = tmp.parent + "/order.txt"
        let steps = (1...5).flatMap { n in ["--step", "echo start \(n) >> \(out); sleep 0.1; echo end \(n) >> \(out)"] }
        let (flow, _) = tmp.startJob(["--owner", "seq", "--goal", "five steps"] + steps)
        let shown = waitForFlow(tmp, flow, seconds: 20, until: isEnded)
        #expect(shown["status"] as? String == "succeeded")
        #expect(shown["controllerId"] as? String == "clawflow/sequence")
        #expect(tasksOf(shown).count == 5)
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines == (1...5).flatMap { ["start \($0)", "end \($0)"] }, "steps overlapped or ran out of order: \(lines)")
        let recorded = (shown["steps"] as? [[String: Any]] ?? []).compactMap { $0["taskId"] as? String }
        #expect(recorded.count == 5)
    }

    @Test("the job knows itself: CLAWFLOW_FLOW_ID, CLAWFLOW_TASK_ID and CLAWFLOW_SPOOL, so it can report its own progress")
    func jobEnvironment() throws {
        let tmp = TemporarySpool()
        let out = tmp.parent + "/ids.txt"
        let script =
            "echo \"$CLAWFLOW_FLOW_ID $CLAWFLOW_TASK_ID $CLAWFLOW_SPOOL\" > \(out); \(shellQuote(Clawflow.binary)) tasks set \"$CLAWFLOW_TASK_ID\" --progress 'half way'"
        let (flow, task) = tmp.startJob(["--owner", "env-job", "--", "sh", "-c", script])
        let shown = waitForFlow(tmp, flow, until: isEnded)
        #expect(shown["status"] as? String == "succeeded")
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "\(flow) \(task) \(tmp.path)\n")
        #expect(tmp.taskRecord(flow, task)["progressSummary"] as? String == "half way", "the job reported through the spool it was given")
    }

    @Test("logs and tasks show take an owner key: the flow's current command task")
    func ownerKeyLookup() {
        let tmp = TemporarySpool()
        let (flow, task) = tmp.startJob(["--owner", "lg-owner", "--", "sh", "-c", "echo from the job"])
        waitForFlow(tmp, flow, until: isEnded)
        let logs = tmp.run(["logs", "lg-owner"])
        #expect(logs.status == 0 && logs.stdout == "from the job\n", "\(logs.stdout)\(logs.stderr)")
        #expect(tmp.json(["tasks", "show", "lg-owner"])["taskId"] as? String == task)
        #expect(tmp.run(["tasks", "show", "nobody-at-all"]).status == 1)
    }

    @Test("a failing middle step fails the sequence, names the step, and no later step starts")
    func failingMiddleStep() throws {
        let tmp = TemporarySpool()
        let out = tmp.parent + "/ran.txt"
        let (flow, _) = tmp.startJob(["--owner", "mid", "--goal", "g", "--step", "echo 1 >> \(out)", "--step", "exit 4", "--step", "echo 3 >> \(out)"])
        let shown = waitForFlow(tmp, flow, until: isEnded)
        #expect(shown["status"] as? String == "failed")
        #expect((shown["blockedSummary"] as? String)?.contains("step 2 of 3") == true)
        #expect((shown["blockedSummary"] as? String)?.contains("exited with code 4") == true)
        #expect(tasksOf(shown).count == 2)
        #expect(shown["blockedTaskId"] as? String == tasksOf(shown).first { $0["status"] as? String == "failed" }?["taskId"] as? String)
        usleep(300_000)
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "1\n")
    }

    @Test("cancelling a running sequence ends the step's whole process group and starts no other step")
    func cancelSequence() throws {
        let tmp = TemporarySpool()
        let marker = "sleep 1000\(getpid())"
        let out = tmp.parent + "/after.txt"
        let (flow, task) = tmp.startJob([
            "--owner", "cx", "--goal", "g", "--step", "sh -c '\(marker)' & sh -c '\(marker)'; true", "--step", "echo ran >> \(out)",
        ])
        waitForFlow(tmp, flow) { tasksOf($0).first?["status"] as? String == "running" }
        usleep(200_000)
        #expect(!processes(containing: marker).isEmpty)
        let r = tmp.run(["flows", "cancel", flow, "--grace", "2s"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("with status cancelled"))
        #expect(processes(containing: marker).isEmpty, "a process of the group is left")
        usleep(500_000)
        let shown = waitForFlow(tmp, flow, until: isEnded)
        #expect(shown["status"] as? String == "cancelled")
        #expect(tasksOf(shown).map { $0["taskId"] as? String } == [task])
        #expect(tasksOf(shown).first?["status"] as? String == "cancelled")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("a cancelled command whose group has a member ignoring SIGTERM ends cancelled with no process of its group left")
    func cancelStubbornGroup() throws {
        let tmp = TemporarySpool()
        let marker = "sleep 1002\(getpid())"
        // The command's main process dies of the SIGTERM; a member of its group ignores it.
        let (flow, task) = tmp.startJob(["--owner", "cs", "--", "sh", "-c", "(trap '' TERM; sh -c '\(marker)') & sleep 300"])
        waitForFlow(tmp, flow) { tasksOf($0).first?["status"] as? String == "running" }
        usleep(300_000)
        #expect(!processes(containing: marker).isEmpty)
        let r = tmp.run(["flows", "cancel", flow, "--grace", "1s"])
        #expect(r.status == 0, "\(r.stderr)")
        let shown = waitForFlow(tmp, flow, until: isEnded)
        #expect(shown["status"] as? String == "cancelled")
        #expect(tasksOf(shown).map { $0["taskId"] as? String } == [task] && tasksOf(shown).first?["status"] as? String == "cancelled")
        #expect(processes(containing: marker).isEmpty, "a process of the group is left")
        #expect(tmp.run(["fsck"]).status == 0)
    }

    @Test("a supervisor killed with SIGKILL leaves its task lost at the next read, and the command's group ended")
    func lostSupervisor() throws {
        let tmp = TemporarySpool()
        let marker = "sleep 1001\(getpid())"
        let (flow, _) = tmp.startJob(["--owner", "lost", "--goal", "g", "--step", "sh -c '\(marker)'", "--step", "true"])
        let running = waitForFlow(tmp, flow) { tasksOf($0).first?["pid"] != nil }
        let supervisor = Int32(tasksOf(running).first?["supervisorPid"] as? Int ?? 0)
        #expect(supervisor > 1 && kill(supervisor, SIGKILL) == 0)
        usleep(200_000)
        let shown = waitForFlow(tmp, flow, until: isEnded)
        #expect(tasksOf(shown).first?["status"] as? String == "lost")
        #expect(shown["status"] as? String == "failed")
        #expect((shown["blockedSummary"] as? String)?.contains("lost") == true)
        usleep(1_500_000)
        #expect(processes(containing: marker).isEmpty)
    }

    @Test(
        "a supervisor killed at once leaves the task lost once its command ran, else the job waits again and runs once; it never runs twice")
    func lostBeforeRunning() throws {
        let tmp = TemporarySpool()
        let marker = "sleep 1002\(getpid())"
        let ran = "\(tmp.path)/ran"
        defer { for pid in processes(containing: marker) { kill(pid, SIGKILL) } }
        let (flow, _) = tmp.startJob(["--owner", "early", "--", "sh", "-c", "echo x >>\(ran); \(marker)"])
        // As run returns, its supervisor (its fork, named clawflow-superv) may not have named
        // itself in the task yet: it does so in the write that records the command running.
        let supervisor = supervisorProcesses(of: tmp.path).first ?? 0
        #expect(supervisor > 1 && kill(supervisor, SIGKILL) == 0, "no supervisor process of \(tmp.path)")
        usleep(200_000)
        // Whether the kill came before that write is a race: after, the task is lost; before,
        // the job waits again, its slot unheld (spool-layout.md, "Queues"), and the next
        // command's hand-off starts it with a new supervisor.
        let shown = waitForFlow(tmp, flow) { isEnded($0) || (tasksOf($0).first?["supervisorPid"] as? Int).map { $0 != Int(supervisor) } == true }
        if isEnded(shown) {
            #expect(tasksOf(shown).first?["status"] as? String == "lost")
            #expect(shown["status"] as? String == "lost")
            #expect(fileLines(ran).count <= 1)
        } else {
            #expect(tasksOf(shown).count == 1, "the same task waits again: \(shown)")
            _ = waitForFlow(tmp, flow) { _ in fileLines(ran).count == 1 }
            #expect(fileLines(ran).count == 1, "the command ran once")
            #expect(tmp.run(["flows", "cancel", flow, "--grace", "1s"]).status == 0)
        }
    }

    @Test("a step's success and the next step's creation are one write, so a sequence never waits with no task naming its supervisor")
    func nextStepInSameWrite() throws {
        let tmp = TemporarySpool()
        let (flow, first) = tmp.startJob(["--owner", "seq1", "--goal", "g", "--step", "true", "--step", "true", "--step", "true"])
        let shown = waitForFlow(tmp, flow, until: isEnded)
        #expect(shown["status"] as? String == "succeeded")
        let tasks = tasksOf(shown)
        #expect(tasks.count == 3)
        #expect(Set(tasks.compactMap { $0["supervisorPid"] as? Int }).count == 1, "one supervisor runs every step: \(tasks)")
        // In events.jsonl the write that records step n succeeded also links step n + 1:
        // the two events are neighbours with the same time.
        let lines = try String(contentsOfFile: "\(tmp.path)/flows/\(flow)/events.jsonl", encoding: .utf8).split(separator: "\n").compactMap {
            jsonObject(String($0))
        }
        var previous = first
        for next in tasks.compactMap({ $0["taskId"] as? String }) where next != first {
            let done = lines.firstIndex { $0["taskId"] as? String == previous && $0["to"] as? String == "succeeded" }
            let linked = lines.firstIndex { $0["taskId"] as? String == next && $0["event"] as? String == "linked" }
            #expect(
                done != nil && linked == done.map { $0 + 1 },
                "step \(previous) succeeded at line \(String(describing: done)), \(next) linked at \(String(describing: linked))")
            if let done, let linked { #expect(lines[done]["at"] as? String == lines[linked]["at"] as? String) }
            previous = next
        }
    }

    @Test("a command starts only once its task is recorded running with its pid, however slow that write")
    func recordedBeforeExec() throws {
        let tmp = TemporarySpool()
        // Every rename of run and its supervisor is made 200 ms slow (strace), so a command
        // started before its record would see its task still queued. It prints its own task
        // file, the only one in this fresh spool.
        let r = runProgram(
            "/usr/bin/strace",
            [
                "-f", "-o", "/dev/null", "-e", "trace=renameat,renameat2",
                "-e", "inject=renameat:delay_enter=200000", "-e", "inject=renameat2:delay_enter=200000", "--",
                Clawflow.binary, "--spool", tmp.path, "run", "--owner", "held", "--", "sh", "-c", "cat \"$0\"/flows/*/tasks/*.json", tmp.path,
            ])
        #expect(r.status == 0, "\(r.stderr)")
        let ids = r.stdout.split(separator: " ").map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) }
        let (flow, task) = (ids.first ?? "", ids.last ?? "")
        let shown = waitForFlow(tmp, flow, until: isEnded)
        #expect(shown["status"] as? String == "succeeded")
        let seen = jsonObject(tmp.run(["logs", task]).stdout) ?? [:]
        #expect(seen["status"] as? String == "running", "the command saw its task as \(seen)")
        #expect(seen["pid"] as? Int != nil && seen["pid"] as? Int == tasksOf(shown).first?["pid"] as? Int)
    }

    @Test("run flushes on at most 2 helper threads and ends them before it forks the supervisor, so its exit does not wait for them")
    func helpersEndBeforeFork() throws {
        let tmp = TemporarySpool()
        tmp.value(["init"])
        let trace = tmp.parent + "/trace"
        let r = runProgram(
            "/usr/bin/strace",
            ["-f", "-o", trace, "-e", "trace=clone,clone3,exit", "--", Clawflow.binary, "--spool", tmp.path, "run", "--owner", "k", "--", "true"])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = ((try? String(contentsOfFile: trace, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        func pid(_ line: String) -> String { String(line.prefix { $0 != " " }) }
        let run = lines.first.map(pid) ?? "-"
        let own = lines.enumerated().filter { pid($0.element) == run }
        // A helper is a clone3 with CLONE_THREAD; its tid ends the line (or the line it resumes on).
        let helpers = own.filter { $0.element.contains("clone3") }.compactMap { $0.element.split(separator: " ").last.map(String.init) }.filter {
            Int($0) != nil
        }
        let fork = own.first { $0.element.contains("clone(") }?.offset
        #expect((1...2).contains(helpers.count), "\(lines)")
        #expect(fork != nil, "\(lines)")
        for helper in helpers {
            let exit = lines.firstIndex { pid($0) == helper && $0.contains("exit(0") }
            #expect(exit != nil && fork != nil && exit! < fork!, "helper \(helper) ended after the fork: \(lines)")
        }
        _ = waitForFlow(tmp, r.stdout.split(separator: " ").first.map(String.init) ?? "-", until: isEnded)
    }

    @Test("a command cancelled after its supervisor took it up, before it was recorded running, never starts")
    func cancelledBeforeStart() throws {
        let tmp = TemporarySpool()
        tmp.value(["init"])
        let trace = tmp.parent + "/trace"
        // run and its supervisor trace their execs, with every fork (clone) 500 ms slow. The
        // supervisor opens the task's log, then forks the held command: the cancel lands in
        // that fork's delay, after the supervisor took the task up and before it records it
        // running. A command that starts shows up in the trace as an execve of its own.
        let script = """
            strace -f -o "$TRACE" -e trace=execve,clone -e inject=clone:delay_enter=500000 -- \\
              "$CLAWFLOW" --spool "$SPOOL" run --owner early -- sh -c 'echo started' >/dev/null &
            i=0
            until ls "$SPOOL"/flows/*/tasks/*.log >/dev/null 2>&1; do i=$((i + 1)); [ $i -lt 1000 ] || exit 3; sleep 0.01; done
            "$CLAWFLOW" --spool "$SPOOL" flows cancel early --grace 1s || exit 4
            wait
            """
        let r = runProgram("/bin/sh", ["-c", script], set: ["TRACE": trace, "CLAWFLOW": Clawflow.binary, "SPOOL": tmp.path])
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        #expect(r.stdout.contains("Cancelled"), "\(r.stdout)")
        let execs = (try? String(contentsOfFile: trace, encoding: .utf8))?.split(separator: "\n").filter { $0.contains("execve(") } ?? []
        let own = "execve(\"\(Clawflow.binary)\""
        #expect(execs.contains { $0.contains(own) }, "the trace saw clawflow's own exec: \(execs)")
        #expect(!execs.contains { !$0.contains(own) }, "the command was started: \(execs)")
        let shown = tmp.json(["flows", "show", "early"])
        #expect(shown["status"] as? String == "cancelled")
        #expect(tasksOf(shown).first?["status"] as? String == "cancelled")
        let taskId = tasksOf(shown).first?["taskId"] as? String ?? "-"
        #expect(tmp.run(["logs", taskId]).stdout.isEmpty)
    }

    @Test("a program that is not found or not executable fails its task with exit code 127 and the reason in its log")
    func notStarted() throws {
        let tmp = TemporarySpool()
        let plain = tmp.parent + "/not-executable"
        try "echo hi\n".write(toFile: plain, atomically: true, encoding: .utf8)
        for (program, reason) in [("no-such-program-\(getpid())", "No such file or directory"), (plain, "Permission denied")] {
            let (flow, task) = tmp.startJob(["--owner", "ns", "--", program, "x"])
            let shown = waitForFlow(tmp, flow, until: isEnded)
            let t = tasksOf(shown).first ?? [:]
            #expect(shown["status"] as? String == "failed" && t["status"] as? String == "failed")
            #expect(t["exitCode"] as? Int == 127)
            let error = t["error"] as? String ?? ""
            #expect(error.contains("could not start") && error.contains(reason), "error: \(error)")
            #expect(tmp.run(["logs", task]).stdout.contains("clawflow: could not start"))
        }
    }

    @Test("a command inherits no descriptor of clawflow's: only stdin, stdout and stderr")
    func cleanDescriptors() throws {
        let tmp = TemporarySpool()
        // ls lists its own descriptors (/proc/self) into the task's log.
        let (flow, task) = tmp.startJob(["--owner", "fd", "--", "ls", "-l", "/proc/self/fd"])
        waitForFlow(tmp, flow, until: isEnded)
        let listing = tmp.run(["logs", task]).stdout
        let fds = listing.split(separator: "\n").compactMap { line -> String? in
            let parts = line.split(separator: " ")
            guard let arrow = parts.firstIndex(of: "->"), arrow > 0 else { return nil }
            return String(parts[arrow - 1]) + " -> " + parts[(arrow + 1)...].joined(separator: " ")
        }
        // 0 is /dev/null, 1 and 2 the pipe its supervisor relays into the log; 3 is the
        // directory ls itself reads.
        let extra = fds.filter { !$0.hasPrefix("0 ") && !$0.hasPrefix("1 ") && !$0.hasPrefix("2 ") && !$0.contains("/proc/") }
        #expect(fds.count >= 3)
        #expect(extra.isEmpty, "inherited: \(extra)")
        #expect(fds.first { $0.hasPrefix("0 ") }?.hasSuffix("/dev/null") == true)
        let out = fds.first { $0.hasPrefix("1 ") }?.dropFirst(2)
        #expect(out?.hasPrefix("-> pipe:[") == true)
        #expect(fds.first { $0.hasPrefix("2 ") }?.dropFirst(2) == out)
    }

    @Test("the supervisor keeps no descriptor run inherited: a pipe held by run's caller reaches EOF when run exits")
    func supervisorDescriptors() throws {
        let tmp = TemporarySpool()
        let held = tmp.parent + "/held-open"
        // The shell gives run a descriptor 7 of its own; a supervisor that kept it would hold
        // the file open (and a pipe's reader would wait for it) as long as the command runs.
        let r = runProgram("/bin/sh", ["-c", "exec 7>\(held); exec \"$0\" --spool \"$1\" run --owner fd -- sleep 5", Clawflow.binary, tmp.path])
        #expect(r.status == 0, "\(r.stderr)")
        let flow = String(r.stdout.split(separator: " ").first ?? "")
        let running = waitForFlow(tmp, flow) { tasksOf($0).first?["pid"] != nil }
        let supervisor = tasksOf(running).first?["supervisorPid"] as? Int ?? 0
        // The pipe the command writes its output into is the supervisor's to read (the
        // command has it as stdout once it is released).
        let command = tasksOf(running).first?["pid"] as? Int ?? 0
        // Between recording the command running and its exec, the supervisor holds the socket
        // that releases it (its own, not run's): look until that is closed, 2 s at most.
        var targets: [String] = []
        var foreign: [String] = []
        for _ in 0..<40 {
            let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(supervisor)/fd")
            let output = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(command)/fd/1")) ?? "?"
            targets = fds.map { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(supervisor)/fd/\($0)")) ?? "?" }
            foreign = targets.filter { $0 != "/dev/null" && !$0.hasPrefix(tmp.path) && !$0.hasPrefix("anon_inode:") && $0 != output }
            if foreign.isEmpty { break }
            usleep(50_000)
        }
        #expect(targets.count >= 3)
        #expect(!targets.contains(held), "the supervisor holds \(held): \(targets)")
        #expect(foreign.isEmpty, "the supervisor holds \(foreign)")
        _ = tmp.run(["flows", "cancel", flow, "--grace", "1s"])
    }

    @Test("logs --follow prints output as it comes and returns when the task ends")
    func followLogs() {
        let tmp = TemporarySpool()
        let (_, task) = tmp.startJob(["--owner", "fl", "--", "sh", "-c", "echo a; sleep 0.5; echo b"])
        let r = tmp.run(["logs", task, "--follow"])
        #expect(r.status == 0 && r.stdout == "a\nb\n")
        let shown = tmp.json(["tasks", "show", task])
        #expect(shown["status"] as? String == "succeeded")
    }

    @Test("logs --json on a finished task is one object with sorted keys: flowId, logPath, output (UTF-8, bad bytes replaced), status, taskId")
    func logsJSON() {
        let tmp = TemporarySpool()
        let (flow, task) = tmp.startJob(["--owner", "lj", "--", "sh", "-c", #"printf 'h\303\251llo\n\033[31mred\n'; printf '\377bad\n' >&2"#])
        waitForFlow(tmp, flow, until: isEnded)
        let r = tmp.run(["logs", task, "--json"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(topLevelKeys(r.stdout) == ["flowId", "logPath", "output", "status", "taskId"])
        let doc = jsonObject(r.stdout)
        #expect(doc?["flowId"] as? String == flow && doc?["taskId"] as? String == task)
        #expect(doc?["status"] as? String == "succeeded")
        #expect(doc?["output"] as? String == "h\u{E9}llo\n\u{1B}[31mred\n\u{FFFD}bad\n")
        #expect(doc?["logPath"] as? String == tmp.file("flows/\(flow)/tasks/\(task).log"))
        // The text form is unchanged: the log's bytes as they are.
        #expect(tmp.run(["logs", task]).stdout == "h\u{E9}llo\n\u{1B}[31mred\n\u{FFFD}bad\n")
    }

    @Test("logs --follow --json is JSON Lines: {\"output\"} per piece as it comes, a character cut between pieces kept whole, then the final status")
    func logsFollowJSON() {
        let tmp = TemporarySpool()
        let (_, task) = tmp.startJob(["--owner", "lf", "--", "sh", "-c", #"printf 'one\n\303'; sleep 1; printf '\251two\n'"#])
        let r = tmp.run(["logs", task, "--follow", "--json"])
        #expect(r.status == 0)
        let objects = lines(r.stdout).map { jsonObject($0) }
        #expect(objects.allSatisfy { $0 != nil }, "every line is one JSON object: \(r.stdout)")
        let chunks = objects.dropLast().compactMap { $0 }
        #expect(chunks.count >= 2, "the output came in pieces: \(r.stdout)")
        #expect(chunks.allSatisfy { keys($0) == ["output"] })
        #expect(chunks.map { $0["output"] as? String ?? "?" }.joined() == "one\n\u{E9}two\n")
        let last = objects.last ?? nil
        #expect(keys(last) == ["flowId", "logPath", "status", "taskId"])
        #expect(last?["status"] as? String == "succeeded" && last?["taskId"] as? String == task)
    }

    @Test("50 concurrent run invocations are all tracked and all finish")
    func fiftyConcurrent() {
        let tmp = TemporarySpool()
        #expect(tmp.run(["init"]).status == 0)
        let results = Mutex<[CommandResult]>([])
        DispatchQueue.concurrentPerform(iterations: 50) { n in
            let r = tmp.run(["run", "--owner", "c\(n % 7)", "--", "sh", "-c", "echo \(n)"])
            results.withLock { $0.append(r) }
        }
        let all = results.withLock { $0 }
        #expect(all.allSatisfy { $0.status == 0 }, "\(all.filter { $0.status != 0 }.map(\.stderr))")
        let deadline = Date().addingTimeInterval(30)
        var done = 0
        while Date() < deadline {
            let list = tmp.json(["tasks", "list"])
            let tasks = list["tasks"] as? [[String: Any]] ?? []
            done = tasks.filter { $0["status"] as? String == "succeeded" }.count
            if tasks.count == 50, done == 50 { break }
            usleep(100_000)
        }
        #expect(done == 50)
        #expect(tmp.run(["fsck"]).status == 0)
    }

    @Test("usage errors: no command, both --step and a command, a sequence without --goal, a bad --timeout")
    func usage() {
        let tmp = TemporarySpool()
        #expect(tmp.run(["run", "--owner", "u"]).status == 64)
        #expect(tmp.run(["run", "--owner", "u", "--goal", "g", "--step", "true", "--", "true"]).status == 64)
        #expect(tmp.run(["run", "--owner", "u", "--step", "true"]).status == 64)
        let bad = tmp.run(["run", "--owner", "u", "--timeout", "soon", "--", "true"])
        #expect(bad.status == 64 && bad.stderr.contains("--timeout"))
        #expect(tmp.run(["run", "--owner", "u", "--cwd", "/nonexistent-dir", "--", "true"]).status == 64)
    }
}
