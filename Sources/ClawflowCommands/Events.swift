import ArgumentParser
import ClawflowModel
import ClawflowSpool
import Glibc
import Synchronization

/// Set by SIGINT or SIGTERM while `events --follow` runs; the poll loop then ends with exit 0.
private let stopRequested = Atomic<Bool>(false)

/// `clawflow events`: the event history of every flow (or one), then new events with --follow.
struct Events: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Print the event history of every flow, or of one, and follow new events.",
        discussion: """
            Events come from each flow's events.jsonl, merged in time order (then by flow id and \
            line). With --follow the command then keeps printing events as they are appended, \
            across all flows (or the one flow) and including flows created later, until SIGINT \
            or SIGTERM (exit 0). With --json every event is one line (JSON Lines): the stored \
            event plus "flowId". A line that is not a JSON object is reported on stderr with its \
            file and line number and skipped (exit 1 at the end, unless following); a last line \
            still being written is left until it is complete.

            Examples:
              clawflow events
              clawflow events --flow session-1
              clawflow events --follow --json | jq -c 'select(.event == "status")'
            """
    )

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Keep printing new events as they are appended, until SIGINT or SIGTERM.")
    var follow = false

    @Option(help: ArgumentHelp("Only the flow this resolves to: a flow id, owner key, or unique id prefix (8+ characters).", valueName: "lookup"))
    var flow: String?

    /// How often --follow looks for new events, in milliseconds.
    private static let pollMilliseconds = 250

    /// How far one flow's log has been printed.
    private struct Cursor {
        /// The byte offset after the last complete line printed.
        var offset = 0
        /// The line number at `offset`.
        var line = 1
        /// The log's size when it was last read (-1: never); a poll that sees the same size skips it.
        var checkedSize = -1
    }

    /// Runs `execute`. The one difference from other commands: with --json a failure is a line
    /// on stderr, not a JSON error document, so stdout stays JSON Lines; the JSON error document
    /// is kept for failures before any event is read (usage, not found, an unreadable spool).
    func run() throws {
        let out = Output(json: global.json)
        do {
            try execute(out)
        } catch {
            if out.json, error.code == .invalidRecord { out.warn(sanitized(error.message)) } else { out.fail(error) }
            throw ExitCode(error.code == .usage ? 64 : 1)
        }
    }

    func execute(_ out: Output) throws(SpoolError) {
        if follow { Self.installStopHandlers() }
        var spool = try readSpool()
        var only: String?
        if let flow {
            guard let spool else {
                throw SpoolError.flowNotFound(flow.trimmingWhitespace())
            }
            only = try spool.resolveFlow(flow)
        }

        // The history: every complete line there is now.
        var cursors: [String: Cursor] = [:]
        var problems = 0
        if let spool {
            var history: [LoggedEvent] = []
            let ids = if let only { [only] } else { try spool.flowIds() }
            for id in ids {
                var cursor = Cursor()
                problems += read(spool, id, &cursor, into: &history, out)
                cursors[id] = cursor
            }
            show(history, out)
        }
        guard follow else {
            if problems > 0 {
                throw SpoolError(.invalidRecord, "\(problems) line\(problems == 1 ? "" : "s") of the event log could not be read; see the messages above.")
            }
            return
        }

        // Following: poll the logs' sizes and print what was appended, until a signal.
        var lastListingFailure: String?
        while !stopRequested.load(ordering: .relaxed) {
            Self.pause()
            if stopRequested.load(ordering: .relaxed) || Self.stdoutIsGone() { break }
            if spool == nil {
                spool = try readSpool()
            }
            guard let spool else { continue }
            let ids: [String]
            if let only {
                ids = [only]
            } else {
                do {
                    ids = try spool.flowIds()
                    lastListingFailure = nil
                } catch {
                    if lastListingFailure != error.message { out.warn(sanitized(error.message)) }
                    lastListingFailure = error.message
                    continue
                }
            }
            var fresh: [LoggedEvent] = []
            for id in ids {
                guard let size = spool.eventLogSize(id) else { continue }
                var cursor = cursors[id] ?? Cursor()
                if size == cursor.checkedSize { continue }
                if size < cursor.offset {
                    out.warn(
                        "\(spool.eventLogPath(id)) is now shorter than the \(cursor.offset) bytes already printed (it was replaced); printing it again from the start."
                    )
                    cursor = Cursor()
                }
                _ = read(spool, id, &cursor, into: &fresh, out)
                cursors[id] = cursor
            }
            if cursors.count > ids.count {
                let listed = Set(ids)
                cursors = cursors.filter { listed.contains($0.key) }
            }
            show(fresh, out)
        }
    }

    /// Reads a flow's complete lines after its cursor into `events` and moves the cursor;
    /// reports unreadable lines (or an unreadable log) on stderr and returns how many.
    private func read(_ spool: Spool, _ flowId: String, _ cursor: inout Cursor, into events: inout [LoggedEvent], _ out: Output) -> Int {
        do {
            let batch = try spool.readEvents(flowId: flowId, from: cursor.offset, line: cursor.line)
            events.append(contentsOf: batch.events)
            cursor.offset = batch.nextOffset
            cursor.line = batch.nextLine
            cursor.checkedSize = batch.size
            for p in batch.problems { out.warn(sanitized(p.message)) }
            return batch.problems.count
        } catch {
            // Pruned since it was listed: nothing to print, nothing wrong.
            if error.code == .notFound { return 0 }
            out.warn(sanitized(error.message))
            // Reported once: the log is looked at again only when its size changes.
            cursor.checkedSize = spool.eventLogSize(flowId) ?? -1
            return 1
        }
    }

    /// Prints events in history order, in a few large writes.
    private func show(_ events: [LoggedEvent], _ out: Output) {
        guard !events.isEmpty else { return }
        var lines: [String] = []
        var bytes = 0
        for event in events.sorted(by: LoggedEvent.precedes) {
            let line = out.json ? EventText.jsonLine(event) : EventText.line(event, out)
            lines.append(line)
            bytes += line.utf8.count + 1
            if bytes >= 1 << 16 {
                out.print(lines.joined(separator: "\n"))
                lines.removeAll(keepingCapacity: true)
                bytes = 0
            }
        }
        if !lines.isEmpty { out.print(lines.joined(separator: "\n")) }
    }

    /// Makes SIGINT and SIGTERM set `stopRequested` (and interrupt the poll's sleep).
    private static func installStopHandlers() {
        // Touch the global first so a handler never runs its lazy initialisation.
        stopRequested.store(false, ordering: .relaxed)
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in stopRequested.store(true, ordering: .relaxed) }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(SIGINT, &action, nil)
        sigaction(SIGTERM, &action, nil)
        StopSignals.unblock()
    }

    /// Sleeps one poll interval; a signal cuts it short.
    private static func pause() {
        var interval = timespec(tv_sec: 0, tv_nsec: pollMilliseconds * 1_000_000)
        nanosleep(&interval, nil)
    }

    /// Whether stdout is a pipe or terminal nobody reads any more (then following ends).
    private static func stdoutIsGone() -> Bool {
        var p = pollfd(fd: 1, events: 0, revents: 0)
        return poll(&p, 1, 0) == 1 && Int32(p.revents) & (POLLERR | POLLHUP) != 0
    }
}

/// The output forms of an event.
enum EventText {
    /// The JSON Lines form: the stored event plus `flowId`, compact, keys sorted.
    static func jsonLine(_ event: LoggedEvent) -> String {
        var fields = event.fields
        fields["flowId"] = .string(event.flowId)
        return JSON.object(fields).compact()
    }

    /// The text form, one line: `<at>  <flowId>  <event>  <what>  (<task or flow>)  [<source>]`.
    /// Fields the form does not show are added as `key=value`; an event of an unknown kind,
    /// or one missing a field its kind needs, is shown as its compact JSON.
    static func line(_ event: LoggedEvent, _ out: Output) -> String {
        let f = event.fields
        guard let at = f["at"]?.stringValue, let kind = f["event"]?.stringValue, let d = describe(kind, f, out) else {
            return "\(sanitized(f["at"]?.stringValue ?? "-"))  \(event.flowId)  " + sanitized(JSON.object(f).compact())
        }
        var line = "\(sanitized(at))  \(event.flowId)  \(kind)"
        if !d.what.isEmpty { line += "  " + d.what }
        let shown: Set<String> = d.used.union(["at", "event", "source"])
        let extras = f.filter { !shown.contains($0.key) }.map { "\(sanitized($0.key))=\(value($0.value))" }
        if !extras.isEmpty { line += "  " + extras.joined(separator: " ") }
        if let subject = d.subject { line += "  (\(subject))" }
        if let source = f["source"].map(value) { line += "  [\(source)]" }
        return line
    }

    /// What an event of a known kind says, and the fields that says it; nil when unknown.
    private static func describe(_ kind: String, _ f: JSONObject, _ out: Output) -> (what: String, subject: String?, used: Set<String>)? {
        func text(_ key: String) -> String? { f[key]?.stringValue.map(sanitized) }
        func status(_ key: String) -> String? { text(key).map(out.status) }
        let task = text("taskId").map { "task " + $0 }
        switch kind {
        case "created":
            guard let mode = text("syncMode"), let s = status("status"), let owner = text("ownerKey") else { return nil }
            return ("\(mode == "task_mirrored" ? "mirrored" : mode) flow, \(s)", "owner " + owner, ["syncMode", "status", "ownerKey"])
        case "linked":
            guard let task, let runtime = text("runtime"), let s = status("status") else { return nil }
            return ("\(runtime) task, \(s)", task, ["taskId", "runtime", "status"])
        case "status":
            guard let from = status("from"), let to = status("to") else { return nil }
            if let task { return ("\(from) -> \(to)", task, ["taskId", "from", "to"]) }
            let revision = f["revision"]?.intValue.map { ", rev \($0)" } ?? ""
            return ("\(from) -> \(to)", "flow" + revision, ["from", "to", "revision"])
        case "cancel":
            return ("requested", task ?? "flow", ["taskId"])
        case "ignored":
            guard let task else { return nil }
            let what = text("reason") ?? text("status").map { "a report of \($0)" } ?? "a report"
            let drop = text("drop").map { ", drop " + $0 } ?? ""
            return (what, task + drop, ["taskId", "reason", "status", "drop"])
        case "drop":
            guard let name = text("name") else { return nil }
            let isRepeat = f["repeat"]?.boolValue == true
            return (isRepeat ? "repeat of \(name), not applied again" : name, task, ["name", "repeat", "taskId"])
        case "repair":
            guard let what = text("what") else { return nil }
            return (what, task, ["what", "taskId"])
        case "pruned":
            return (text("reason") ?? "", task ?? "flow", ["reason", "taskId"])
        case "notify":
            guard let hook = text("hook"), let result = text("status") else { return nil }
            var how = [text("to").map { "of \($0)" }, f["attempt"]?.intValue.map { "attempt \($0)" }].compactMap { $0 }
            if f["repeat"]?.boolValue == true { how.append("repeat") }
            if let code = f["exitCode"]?.intValue { how.append("exit \(code)") }
            if let signal = text("signal") { how.append(signal) }
            if let stderr = text("stderr") { how.append("stderr: \(stderr)") }
            if let error = text("error") { how.append(error) }
            return (
                "hook \(hook) \(result)" + (how.isEmpty ? "" : " (\(how.joined(separator: ", ")))"), task ?? "flow",
                ["hook", "status", "to", "attempt", "repeat", "exitCode", "signal", "stderr", "error", "taskId", "timedOut"]
            )
        default:
            return nil
        }
    }

    /// A field's value for text: a string as it is (quoted when it has spaces), else compact JSON.
    private static func value(_ v: JSON) -> String {
        if let s = v.stringValue, !s.isEmpty, !s.contains(where: \.isWhitespace) { return sanitized(s) }
        return sanitized(v.compact())
    }
}
