import ArgumentParser
import ClawflowModel
import ClawflowRunner
import ClawflowSpool
import Glibc

/// `clawflow run`: start a command (or a sequence of steps) detached, tracked as a flow.
struct Run: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command detached as a one-task flow, or steps one after another as a sequence.",
        discussion: """
            The command runs in its own session and process group, with stdin from /dev/null and \
            stdout and stderr appended to the task's log (clawflow logs <task>); run prints the \
            flow id and the task id and returns at once. A supervisor process records the task \
            running, then succeeded (exit 0), failed (exit code or signal) or timed_out (after \
            --timeout the whole process group is ended). No watcher is needed.

            Every job waits in a queue (--queue; without it, the one named default) for a free slot: while the \
            queue's jobs hold all of its slots (clawflow queue set NAME --slots N) it is recorded \
            queued and starts, by --priority (higher first) then arrival, the moment a slot frees. \
            A queue never given slots has no limit.

            Without --owner the job's owner key is user:<login name> (the name of the effective \
            user id, or user:<uid> when it has none), so that one person's jobs share a key as \
            pueue's default group does.

            On a terminal run prints one line saying what it did, with the commands that follow \
            the job; piped, it prints the flow id and the task id only.

            The log keeps at most --log-limit bytes (default 64M): when the output passes it, the \
            newest half is kept behind a line saying how many bytes were dropped.

            With --after LOOKUP... (flow ids, owner keys or id prefixes) the job waits, holding no \
            slot, until every one of those flows has succeeded; when one fails, is cancelled or \
            is lost, the job ends cancelled without running, its summary naming that flow.

            With --retries N a run that failed, timed out or was lost (its supervisor killed, \
            the machine rebooted) runs again, up to N times, after --retry-delay (default: at \
            once), as clawflow retry would run it (a new task, an event retry); the job keeps its \
            slot meanwhile. A cancelled run is not retried.

            With --step (repeatable) the steps form a sequence: each step runs as `sh -c CMD` only \
            after the previous one succeeded; a failed, timed-out or lost step fails the flow and \
            no later step starts.

            Examples:
              clawflow run --owner session-1 -- make -C ~/src/app test
              clawflow run --owner nightly --goal "build and ship" \\
                  --step "make" --step "make install"
              clawflow run --owner session-1 --timeout 10m --cwd /srv/data -- ./import.sh
              clawflow run --owner batch --queue gpu --priority 5 -- ./train.sh
              clawflow run --retries 3 --retry-delay 30s -- ./fetch.sh
              clawflow run --owner deploy --after build test -- ./deploy.sh
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("The owner key of the new flow (default: user:<login name>).", valueName: "key"))
    var owner: String?

    @Option(help: ArgumentHelp("What the job is for (required with --step).", valueName: "text"))
    var goal: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("End each command's process group after this long (e.g. 90, 30s, 10m).", valueName: "duration"))
    var timeout: String?

    @Option(help: ArgumentHelp("Keep each command's log under this size, its newest bytes (e.g. 1M, 512K; default 64M).", valueName: "size"))
    var logLimit: String?

    @Option(help: ArgumentHelp("The working directory (default: the current one).", valueName: "dir"))
    var cwd: String?

    @Option(name: .customLong("step"), help: ArgumentHelp("A step of a sequence, run as sh -c CMD (repeat in order).", valueName: "cmd"))
    var steps: [String] = []

    @Option(help: ArgumentHelp("The queue the job waits in for a slot (see clawflow queue); without it, the default queue.", valueName: "name"))
    var queue: String?

    @Option(help: ArgumentHelp("Start before the queue's jobs of lower priority (-9999...9999).", valueName: "n"))
    var priority: Int64 = 0

    @Option(
        parsing: .upToNextOption,
        help: ArgumentHelp("Start only after these flows have all succeeded (flow ids, owner keys, id prefixes).", valueName: "lookup"))
    var after: [String] = []

    @Option(help: ArgumentHelp("Run a failed or timed-out command again, up to N times (0-100).", valueName: "n"))
    var retries: Int64 = 0

    @Option(parsing: .unconditional, help: ArgumentHelp("Wait this long before each of those retries (e.g. 30s, 5m).", valueName: "duration"))
    var retryDelay: String?

    @Option(
        name: .customLong("on-finish"),
        help: ArgumentHelp(
            "Run this shell command (sh -c) when the job ends, with its record on stdin and CLAWFLOW_* variables (README, Notification hooks).",
            valueName: "cmd"))
    var onFinish: String?

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command and its arguments, after --.", valueName: "cmd"))
    var command: [String] = []

    func execute(_ out: Output) throws(SpoolError) {
        let key = try owner.map { (o) throws(SpoolError) in try Parse.ownerKey(o) } ?? Run.defaultOwner()
        let goalText = try goal.map { (g) throws(SpoolError) in try Parse.text(g, option: "--goal") }
        var timeoutSeconds: Int64?
        if let timeout {
            timeoutSeconds = try Parse.duration(timeout, option: "--timeout")
            guard timeoutSeconds! > 0 else { throw Parse.usage("--timeout must be longer than 0 s.") }
        }
        let limit = try logLimit.map { (text) throws(SpoolError) -> Int64 in
            guard let bytes = SizeText.bytes(text) else {
                throw Parse.usage("Invalid size \"\(sanitized(text))\" for --log-limit; use bytes or a number with K, M or G (512K, 64M).")
            }
            guard bytes >= LogCut.minimumLimit else { throw Parse.usage("--log-limit must be at least \(LogCut.minimumLimit) bytes.") }
            return bytes
        }
        let directory = try workingDirectory()
        let queueName = queue ?? Layout.defaultQueue
        _ = try Parse.queueName(queueName)
        guard Layout.priorityRange.contains(priority) else {
            throw Parse.usage("--priority must be between \(Layout.priorityRange.lowerBound) and \(Layout.priorityRange.upperBound).")
        }
        guard (0...100).contains(retries) else { throw Parse.usage("--retries must be between 0 and 100.") }
        let delay = try retryDelay.map { (d) throws(SpoolError) in try Parse.duration(d, option: "--retry-delay") } ?? 0
        guard retryDelay == nil || retries > 0 else { throw Parse.usage("--retry-delay needs --retries.") }
        var dependencies: [String] = []
        if !after.isEmpty {
            guard let spool = try readSpool() else { throw SpoolError.flowNotFound(after[0].trimmingWhitespace()) }
            for lookup in after {
                let id = try spool.resolveFlow(lookup)
                if !dependencies.contains(id) { dependencies.append(id) }
            }
        }
        let hook = try onFinish.map { (c) throws(SpoolError) -> String in
            guard !c.trimmingWhitespace().isEmpty else { throw Parse.usage("--on-finish needs a command.") }
            return try Parse.text(c, option: "--on-finish")
        }
        let placement = Runner.Placement(queue: queueName, priority: priority, retries: retries, retryDelaySeconds: delay, after: dependencies)
        let started: Runner.Started
        do {
            if !steps.isEmpty {
                guard command.isEmpty else { throw Parse.usage("Give either --step commands or one command after --, not both.") }
                guard let goalText else { throw Parse.usage("A sequence needs --goal.") }
                for step in steps where step.trimmingWhitespace().isEmpty { throw Parse.usage("A --step command may not be empty.") }
                started = try Runner(spool: try writeSpool()).runSequence(
                    ownerKey: key, goal: goalText, steps: steps, timeoutSeconds: timeoutSeconds, logLimit: limit, cwd: directory, placement: placement,
                    onFinish: hook)
            } else {
                guard !command.isEmpty else {
                    throw Parse.usage("Give the command after --, e.g. clawflow run --owner KEY -- make test; or steps with --step.")
                }
                started = try Runner(spool: try writeSpool()).run(
                    ownerKey: key, goal: goalText, timeoutSeconds: timeoutSeconds, logLimit: limit, cwd: directory, command: command, placement: placement,
                    onFinish: hook)
            }
        } catch let error as SpoolError {
            throw error
        } catch {
            throw SpoolError(.io, "\(error)")
        }
        if out.json {
            out.emit(.object(JSONObject(["flowId": .string(started.flowId), "taskId": .string(started.taskId)])))
        } else if isatty(1) == 1 {
            let spoolOption = global.spool.map { " --spool " + sanitized(CommandText.shellWord($0)) } ?? ""
            out.print(
                (started.started ? "Started" : "Queued") + " flow \(started.flowId) (task \(started.taskId)) for \(sanitized(key)) in queue \(queueName)"
                    + "; follow with clawflow\(spoolOption) logs --follow \(started.taskId), or clawflow\(spoolOption) wait \(started.flowId)")
        } else {
            out.print("\(started.flowId) \(started.taskId)")
        }
    }

    /// The queue `execute` handed on when it enqueued the job (`Runner.enqueue`).
    var queueHandedOff: String? { queue ?? Layout.defaultQueue }

    /// The owner key of a job run without --owner: `user:` and the effective user's login
    /// name, or its uid when the password database has no name for it.
    static func defaultOwner() -> String {
        let uid = geteuid()
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        if getpwuid_r(uid, &entry, &buffer, buffer.count, &found) == 0, found != nil, let name = entry.pw_name {
            let text = String(cString: name)
            if (try? OwnerKey.validate("user:" + text)) != nil { return "user:" + text }
        }
        return "user:\(uid)"
    }

    /// --cwd made absolute and checked, or the current directory.
    func workingDirectory() throws(SpoolError) -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let here = getcwd(&buffer, buffer.count).map { String(cString: $0) } ?? "/"
        guard let cwd else { return here }
        let path = cwd.hasPrefix("/") ? cwd : here + "/" + cwd
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw Parse.usage("--cwd \(sanitized(cwd)) is not a directory.")
        }
        return path
    }
}
