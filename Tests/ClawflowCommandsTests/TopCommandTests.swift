import ClawflowTestSupport
import Foundation
import Glibc
import Testing

/// A tmux server of its own (a private socket) running one window of a given size.
final class TmuxPane {
    let socket = "clawflow-test-\(getpid())-\(UUID().uuidString.prefix(8))"

    /// Starts `command` (a shell command line) in a new detached session.
    init(_ command: String, width: Int = 120, height: Int = 40) {
        let r = tmux(["new-session", "-d", "-s", "top", "-x", String(width), "-y", String(height), command])
        #expect(r.status == 0, "tmux new-session: \(r.stderr)")
    }

    /// Runs tmux through system(3), its output in a file: under Foundation's Process the
    /// tmux client (whose server forks off it) was seen to leave the reader waiting forever.
    @discardableResult
    func tmux(_ arguments: [String]) -> CommandResult {
        let out = NSTemporaryDirectory() + "/tmux-\(socket)-\(UUID().uuidString).out"
        defer { unlink(out) }
        let line = (["env", "-u", "TMUX", "-u", "NO_COLOR", "TERM=xterm-256color", "/usr/bin/tmux", "-L", socket, "-f", "/dev/null"] + arguments)
            .map(shellQuote).joined(separator: " ")
        let status = system(line + " > " + shellQuote(out) + " 2>&1 < /dev/null")
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        return CommandResult(status: status == -1 ? -1 : (status >> 8) & 0xFF, stdout: text, stderr: text)
    }

    /// Sends keys as tmux names them (`Down`, `Enter`, `q`).
    func keys(_ keys: String...) { tmux(["send-keys", "-t", "top"] + keys) }

    /// The text the pane shows now.
    func capture() -> String { tmux(["capture-pane", "-p", "-t", "top"]).stdout }

    /// Resizes the window.
    func resize(width: Int, height: Int) { tmux(["resize-window", "-t", "top", "-x", String(width), "-y", String(height)]) }

    /// Waits (up to `seconds`) until the pane's text satisfies `check`; returns the last capture.
    @discardableResult
    func wait(seconds: Double = 15, _ what: String, sourceLocation: SourceLocation = #_sourceLocation, until check: (String) -> Bool) -> String {
        let deadline = Date().addingTimeInterval(seconds)
        var text = capture()
        while !check(text) {
            if Date() > deadline {
                Issue.record("The pane never showed \(what); it shows:\n\(text)", sourceLocation: sourceLocation)
                return text
            }
            usleep(20_000)
            text = capture()
        }
        return text
    }

    deinit { tmux(["kill-server"]) }
}

/// Waits up to `seconds` for a file to exist; its text.
func waitForFile(_ path: String, seconds: Double = 15) -> String? {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if let text = try? String(contentsOfFile: path, encoding: .utf8), text.hasSuffix("\n") { return text }
        usleep(20_000)
    }
    return nil
}

@Suite("clawflow top")
struct TopCommandTests {
    /// The shell command that runs top in the pane between two `stty -a`, then waits.
    func script(_ spool: TemporarySpool, _ extra: String = "") -> String {
        let dir = spool.parent
        let top = "echo $$ > \(dir)/top.pid; exec \(Clawflow.binary) --spool \(spool.path) top \(extra)"
        return "stty -a > \(dir)/stty.before; sh -c \(shellQuote(top)); echo \"top exited $?\"; stty -a > \(dir)/stty.after; sleep 600"
    }

    @Test("off a terminal it prints one plain snapshot of the flows in flight and the latest events, exit 0")
    func snapshot() {
        let spool = TemporarySpool()
        let live = spool.value(["tasks", "add", "--owner", "alice", "--runtime", "cron", "--label", "nightly", "--status", "running"])
        let task = spool.value(["tasks", "add", "--owner", "bob", "--runtime", "cron", "--label", "done-job", "--status", "running"])
        #expect(spool.run(["tasks", "set", task, "--status", "succeeded"]).status == 0)
        #expect(spool.run(["tasks", "set", live, "--status", "running", "--progress", "half way"]).status == 0)
        let r = spool.run(["top"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(!hasControlCharacters(r.stdout))
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("clawflow top  1 live (1 running), 1 ended recently") == true)
        #expect(lines.contains { $0.contains("alice") && $0.contains("running") && $0.contains("half way") })
        #expect(lines.contains { $0.contains("bob") && $0.contains("succeeded") })
        #expect(lines.firstIndex { $0.contains("alice") }! < lines.firstIndex { $0.contains("bob") }!)
        #expect(lines.contains("  LATEST EVENTS"))
        #expect(lines.contains { $0.contains("running -> succeeded") })
        // Ended flows beyond --recent are left out.
        #expect(!spool.run(["top", "--recent", "0"]).stdout.contains("bob"))
    }

    @Test("on a missing spool it prints an empty snapshot without creating it; --json and bad durations are usage errors")
    func emptyAndUsage() {
        let spool = TemporarySpool()
        let missing = spool.parent + "/none"
        let r = Clawflow.run(["--spool", missing, "top"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("No flows in flight."))
        #expect(!FileManager.default.fileExists(atPath: missing))
        #expect(spool.run(["top", "--json"]).status == 64)
        #expect(spool.run(["top", "--recent", "soon"]).status == 64)
        #expect(spool.run(["top", "--poll", "0"]).status == 64)
    }

    @Test("in tmux it shows a new flow, follows its status, opens its tasks and output, and q leaves the terminal as it found it")
    func live() throws {
        let spool = TemporarySpool()
        _ = spool.value(["init"])
        let pane = TmuxPane(script(spool))
        pane.wait("the empty list", until: { $0.contains("No flows in flight.") })

        let task = spool.value(["tasks", "add", "--owner", "watcher-one", "--runtime", "cron", "--label", "first", "--status", "queued"])
        pane.wait("the new flow", until: { $0.contains("watcher-one") && $0.contains("queued") })
        #expect(spool.run(["tasks", "set", task, "--status", "running", "--progress", "step two of three"]).status == 0)
        pane.wait("the status change", until: { $0.contains("watcher-one") && $0.contains("running") && $0.contains("step two of three") })
        pane.wait("the event", until: { $0.contains("queued -> running") })

        // A command job with output; enter shows its task and the tail of its log.
        let job = spool.startJob(["--owner", "printer", "--", "sh", "-c", "echo line-one; echo line-two; sleep 60"])
        pane.wait("the command job", until: { $0.contains("printer") })
        pane.keys("Home", "Enter")
        pane.wait(
            "the task view and its output",
            until: { text in
                text.contains("flow \(job.flow)") && text.contains("OUTPUT OF TASK \(job.task)")
                    && text.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces) == "line-two" }
            })
        pane.keys("Escape")
        pane.wait("the list again", until: { $0.contains("LATEST EVENTS") })
        #expect(spool.run(["flows", "cancel", job.flow, "--grace", "1"]).status == 0)

        pane.keys("q")
        let after = try #require(waitForFile(spool.parent + "/stty.after"))
        let before = try String(contentsOfFile: spool.parent + "/stty.before", encoding: .utf8)
        #expect(after == before)
        let shown = pane.capture()
        #expect(shown.contains("top exited 0"))
        #expect(!shown.contains("LATEST EVENTS"))
    }

    @Test("in tmux c asks first, n keeps the flow, y cancels it; a resize lays the screen out again")
    func cancelAndResize() throws {
        let spool = TemporarySpool()
        let job = spool.startJob(["--owner", "doomed", "--", "sleep", "60"])
        let pane = TmuxPane(script(spool, "--grace 1"))
        pane.wait("the job", until: { $0.contains("doomed") && $0.contains("running") })
        pane.keys("c")
        pane.wait("the question", until: { $0.contains("Cancel flow \(job.flow) (owner doomed)? y/n") })
        pane.keys("n")
        pane.wait("the refusal", until: { $0.contains("Not cancelled.") })
        #expect(spool.json(["flows", "show", job.flow, "--json"])["status"] as? String == "running")
        pane.keys("c")
        pane.wait("the question again", until: { $0.contains("? y/n") })
        pane.keys("y")
        pane.wait("the outcome", until: { $0.contains("Cancelled \(job.flow)") })
        #expect(spool.json(["flows", "show", job.flow, "--json"])["status"] as? String == "cancelled")
        pane.wait("the cancelled row", until: { $0.contains("doomed") && $0.contains("cancelled") })

        pane.resize(width: 70, height: 20)
        // The title line ends with the clock at the last column: it spans the new width.
        let small = pane.wait(
            "the narrow layout",
            until: { text in
                let lines = text.split(separator: "\n")
                return lines.first?.hasPrefix("clawflow top") == true && lines.first?.count == 70
            })
        #expect(small.split(separator: "\n").allSatisfy { $0.count <= 70 })
        pane.resize(width: 120, height: 40)
        pane.wait("the wide layout", until: { $0.split(separator: "\n").first?.count == 120 && $0.contains("PROGRESS") })

        pane.keys("C-c")
        let after = try #require(waitForFile(spool.parent + "/stty.after"))
        #expect(after == (try String(contentsOfFile: spool.parent + "/stty.before", encoding: .utf8)))
        #expect(pane.capture().contains("top exited 0"))
    }

    @Test("in tmux status words are coloured, and not with NO_COLOR; the selection is reverse video either way")
    func colour() throws {
        let spool = TemporarySpool()
        _ = spool.value(["tasks", "add", "--owner", "painted", "--runtime", "cron", "--status", "running"])
        let coloured = TmuxPane("\(Clawflow.binary) --spool \(spool.path) top; sleep 600")
        let plain = TmuxPane("NO_COLOR=1 \(Clawflow.binary) --spool \(spool.path) top; sleep 600")
        for pane in [coloured, plain] { pane.wait("the flow", until: { $0.contains("painted") }) }
        let withColour = coloured.tmux(["capture-pane", "-p", "-e", "-t", "top"]).stdout
        let withoutColour = plain.tmux(["capture-pane", "-p", "-e", "-t", "top"]).stdout
        #expect(withColour.contains("\u{1B}[33m"))
        #expect(!withoutColour.contains("\u{1B}[33m"))
        #expect(withoutColour.contains("\u{1B}[7m"))
        coloured.keys("q")
        plain.keys("q")
    }

    @Test("SIGTERM restores the terminal and exits 0; --poll follows changes without inotify")
    func sigtermAndPoll() throws {
        let spool = TemporarySpool()
        _ = spool.value(["init"])
        let pane = TmuxPane(script(spool, "--poll 1"))
        pane.wait("the polling title", until: { $0.contains("read every 1 s") })
        _ = spool.value(["tasks", "add", "--owner", "polled", "--runtime", "cron", "--status", "running"])
        pane.wait("the flow read by polling", until: { $0.contains("polled") })
        let pid = try #require(waitForFile(spool.parent + "/top.pid").flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
        #expect(kill(pid, SIGTERM) == 0)
        let after = try #require(waitForFile(spool.parent + "/stty.after"))
        #expect(after == (try String(contentsOfFile: spool.parent + "/stty.before", encoding: .utf8)))
        #expect(pane.capture().contains("top exited 0"))
    }
}
