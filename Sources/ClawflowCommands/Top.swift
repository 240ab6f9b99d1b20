import ArgumentParser
import ClawflowModel
import ClawflowSpool
import ClawflowTerminal
import ClawflowWatch
import Dispatch
import Glibc
import Synchronization
import SystemPackage

/// `clawflow top`: a full-screen live view of the work in flight.
struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "Show the work in flight full screen, live: flows, their tasks, the latest events.",
        discussion: """
            Lists the flows that are live or ended within --recent (live ones first, newest \
            first): id, owner, status (* when a cancel was requested), current step, active/total \
            tasks, duration, queue and progress (the current task's progress text, else why the \
            flow is blocked or failed, else its goal); below them the latest events. The screen \
            changes when the spool does: inotify says which flows changed and only those are \
            read again (with --poll, and on NFS, CIFS, FUSE or CephFS, the spool is read every \
            few seconds instead); bursts of changes are drawn at most every 40 ms, and only the \
            lines that changed are written. Durations and the clock move once a second.

            Keys: up/down (or k/j), page up/down, home/end move; enter shows the flow's tasks and \
            the tail of a command task's output (up/down pick the task, esc or left goes back); \
            c cancels the flow after a y/n question (as flows cancel does, with --grace); q or \
            ctrl-c quits. The terminal is put back as it was on q, SIGINT, SIGTERM and SIGHUP; \
            SIGWINCH lays the screen out again. Colour only without NO_COLOR.

            Off a terminal (stdout not a tty) it prints one snapshot as plain text and exits 0.

            Examples:
              clawflow top
              clawflow top --recent 1h
              clawflow top | head -20
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("Show flows that ended this long ago or less (e.g. 10m, 1h; 0 shows live flows only).", valueName: "duration"))
    var recent = "10m"

    @Option(
        parsing: .unconditional, help: ArgumentHelp("Read the spool this often instead of using inotify (e.g. 2, 5s; 1 s to 1d).", valueName: "duration"))
    var poll: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("How long a command task gets between SIGTERM and SIGKILL when c cancels it.", valueName: "duration"))
    var grace = "10s"

    func validate() throws {
        if global.json {
            throw ValidationError("top draws a screen and has no --json form; use clawflow flows list --json, or events --follow --json for a stream.")
        }
        for (value, option) in [(recent, "--recent"), (grace, "--grace")] {
            do { _ = try Parse.duration(value, option: option) } catch { throw ValidationError(error.message) }
        }
        if let poll {
            let seconds: Int64
            do { seconds = try Parse.duration(poll, option: "--poll") } catch { throw ValidationError(error.message) }
            guard seconds >= 1, seconds <= Watch.longestPoll else {
                throw ValidationError("--poll must be from 1 s to 1d (86400 s), e.g. 2, 5s or 1m; \"\(sanitized(poll))\" is \(seconds) s.")
            }
        }
    }

    func run() throws {
        let settings = TopSettings(
            root: global.spoolPath,
            recentSeconds: DurationText.seconds(recent) ?? 600,
            pollSeconds: poll.flatMap(DurationText.seconds),
            grace: Double(DurationText.seconds(grace) ?? 10),
            color: environment("NO_COLOR") == nil)
        do {
            if Terminal.isTerminal(1) && Terminal.isTerminal(0) {
                try TopScreen(settings).run()
            } else {
                try TopScreen.snapshot(settings)
            }
        } catch let error as SpoolError {
            Output(json: false).fail(error)
            throw ExitCode(1)
        } catch let error as WatchError {
            Output(json: false).fail(SpoolError(.io, error.message, path: error.path, errno: error.errno))
            throw ExitCode(1)
        } catch let error as TerminalError {
            Output(json: false).fail(SpoolError(.io, error.message))
            throw ExitCode(1)
        }
    }
}

/// The options of one `top`.
struct TopSettings: Sendable {
    var root: FilePath
    var recentSeconds: Int64
    var pollSeconds: Int64?
    var grace: Double
    var color: Bool
}

/// What `top` knows of the spool: the flows in view, the latest events, and how far each
/// flow's event log has been read. Changed only by reading; drawn by `TopLayout`.
struct TopModel {
    /// Flows live, or ended within the window, by id.
    var flows: [String: FlowSnapshot] = [:]
    /// Every flow id in the spool, sorted (for the shortest unique prefixes).
    var allIds: [String] = []
    /// The latest events of flows in view, oldest first.
    var events: [LoggedEvent] = []
    /// Per flow: the byte offset and line number after the last event read.
    var cursors: [String: (offset: Int, line: Int)] = [:]
    /// The last reading failure, shown on the status line.
    var problem: String?
    /// Flows followed with inotify.
    var followed: Set<String> = []

    static let keptEvents = 200

    /// Whether a flow belongs in view at `now`.
    static func inView(_ flow: FlowRecord, now: Timestamp, recent: Int64) -> Bool {
        guard flow.isTerminal else { return true }
        guard recent > 0 else { return false }
        let ended = flow.endedAt ?? flow.updatedAt ?? flow.createdAt
        return now.seconds(since: ended) <= recent
    }

    /// The flows in display order: live ones newest first, then ended ones, latest ended first.
    func ordered() -> [FlowSnapshot] {
        let all = Array(flows.values)
        let live = all.filter { !$0.flow.isTerminal }.sorted { $0.flow.flowId > $1.flow.flowId }
        let ended = all.filter { $0.flow.isTerminal }.sorted {
            let a = $0.flow.endedAt ?? $0.flow.createdAt
            let b = $1.flow.endedAt ?? $1.flow.createdAt
            return a != b ? a > b : $0.flow.flowId > $1.flow.flowId
        }
        return live + ended
    }

    /// Reads the new lines of a flow's event log into `events`.
    mutating func readEvents(_ spool: Spool, _ flowId: String) -> [LoggedEvent] {
        let cursor = cursors[flowId] ?? (0, 1)
        guard let batch = try? spool.readEvents(flowId: flowId, from: cursor.offset, line: cursor.line) else { return [] }
        if batch.size < cursor.offset {
            cursors[flowId] = (0, 1)
            return []
        }
        cursors[flowId] = (batch.nextOffset, batch.nextLine)
        return batch.events
    }

    /// Adds events, keeping the latest `keptEvents` in order.
    mutating func add(_ fresh: [LoggedEvent]) {
        guard !fresh.isEmpty else { return }
        events.append(contentsOf: fresh)
        events.sort(by: LoggedEvent.precedes)
        if events.count > TopModel.keptEvents { events.removeFirst(events.count - TopModel.keptEvents) }
    }

    /// Reads the whole spool: every flow's manifest, then the ones in view whole, following
    /// the live ones first (so that a change after the read cannot go unseen).
    mutating func load(_ spool: Spool, feed: ChangeFeed?, recent: Int64) {
        let now = Spool.now()
        do { allIds = try spool.flowIds() } catch {
            problem = error.message
            return
        }
        flows = [:]
        events = []
        cursors = [:]
        var fresh: [LoggedEvent] = []
        for id in allIds {
            guard let manifest = try? spool.readManifest(id), TopModel.inView(manifest, now: now, recent: recent) else { continue }
            if let feed, !manifest.isTerminal, !followed.contains(id) {
                feed.follow(id)
                followed.insert(id)
            }
            do {
                let snap = try spool.flow(id)
                flows[id] = snap
                fresh += readEvents(spool, id)
            } catch {
                if error.code != .notFound { problem = error.message }
            }
        }
        add(fresh)
    }

    /// Reads the flows `ids` again: in view or not, appeared or gone; stops following ended ones.
    mutating func refresh(_ ids: Set<String>, _ spool: Spool, feed: ChangeFeed?, recent: Int64) {
        let now = Spool.now()
        var fresh: [LoggedEvent] = []
        for id in ids {
            let snap: FlowSnapshot
            do { snap = try spool.flow(id) } catch {
                if error.code == .notFound {
                    flows[id] = nil
                    cursors[id] = nil
                    followed.remove(id)
                    let at = Identifier.lowerBound(allIds, id)
                    if at < allIds.count, allIds[at] == id { allIds.remove(at: at) }
                } else {
                    problem = error.message
                }
                continue
            }
            let at = Identifier.lowerBound(allIds, id)
            if at == allIds.count || allIds[at] != id { allIds.insert(id, at: at) }
            if snap.flow.isTerminal, followed.contains(id) {
                feed?.forget(id)
                followed.remove(id)
            } else if !snap.flow.isTerminal, feed != nil {
                // A new flow's directories are watched by the inotify thread as it appears.
                followed.insert(id)
            }
            if TopModel.inView(snap.flow, now: now, recent: recent) {
                flows[id] = snap
                fresh += readEvents(spool, id)
            } else {
                flows[id] = nil
            }
        }
        add(fresh)
    }

    /// Drops ended flows whose time in view is over; whether any went.
    mutating func expire(now: Timestamp, recent: Int64) -> Bool {
        let gone = flows.values.filter { !TopModel.inView($0.flow, now: now, recent: recent) }.map(\.flow.flowId)
        for id in gone { flows[id] = nil }
        if !gone.isEmpty {
            let left = Set(flows.keys)
            events.removeAll { !left.contains($0.flowId) }
        }
        return !gone.isEmpty
    }
}

/// Where the user is: the list or one flow's tasks, what is selected, what is asked.
struct TopView {
    enum Mode: Equatable {
        case list
        case detail(String)
    }

    var mode = Mode.list
    /// The flow selected in the list (kept by id, so it stays put while rows move).
    var selectedFlow: String?
    /// The task selected in the detail view.
    var selectedTask: String?
    /// The first list row shown.
    var scroll = 0
    /// A flow waiting for y/n before it is cancelled.
    var confirmCancel: String?
    /// A line for the status bar (a cancel's outcome, a refusal).
    var message: String?
}

/// Pure: the frames of `top` from the model and the view.
enum TopLayout {
    static let bold = Style(bold: true)
    static let heading = Style(bold: true, reverse: true)

    static func statusStyle(_ status: String) -> Style {
        switch status {
        case "succeeded": Style(color: .green)
        case "failed", "lost", "timed_out": Style(color: .red)
        case "running", "waiting", "blocked": Style(color: .yellow)
        case "cancelled": Style(dim: true)
        default: Style(color: .cyan)
        }
    }

    /// The flow table's columns (QUEUE only when some flow is queued).
    static func flowColumns(withQueue: Bool) -> [Column] {
        var c = [
            Column("FLOW", minimum: 13, maximum: 36),
            Column("OWNER", minimum: 5, maximum: 24, dropOrder: 2),
            Column("STATUS", minimum: 9, maximum: 10),
            Column("STEP", minimum: 4, maximum: 20, dropOrder: 3),
            Column("TASKS", minimum: 5, maximum: 9, dropOrder: 1),
            Column("DURATION", minimum: 8, maximum: 9, dropOrder: 4),
        ]
        if withQueue { c.append(Column("QUEUE", minimum: 5, maximum: 16, dropOrder: 5)) }
        c.append(Column("PROGRESS", minimum: 8, maximum: 400, flexible: true))
        return c
    }

    /// Duration of a flow: from its first task's start (else its creation) to its end or now.
    static func duration(_ snap: FlowSnapshot, now: Timestamp) -> String {
        let start = snap.tasks.compactMap(\.startedAt).min() ?? snap.flow.createdAt
        let end = snap.flow.isTerminal ? (snap.flow.endedAt ?? now) : now
        return DurationText.describe(end.seconds(since: start))
    }

    /// The current step: its name, with its place among the steps of a sequence.
    static func step(_ flow: FlowRecord) -> String {
        guard let name = flow.currentStep, !name.isEmpty else { return "-" }
        if let steps = flow.steps, let i = steps.firstIndex(where: { $0.objectValue?["name"]?.stringValue == name }) {
            return "\(i + 1)/\(steps.count) \(name)"
        }
        return name
    }

    /// What a flow is doing, in words: the newest active task's progress, else why it is
    /// blocked or failed, else the newest task's summary or error, else its goal.
    static func progress(_ snap: FlowSnapshot) -> String {
        let f = snap.flow
        if let active = snap.tasks.last(where: { $0.status.isActive }) {
            if let p = active.progressSummary, !p.isEmpty { return p }
        }
        if let b = f.blockedSummary, !b.isEmpty { return b }
        if f.isTerminal, let last = snap.tasks.last {
            if let s = last.terminalSummary ?? last.error, !s.isEmpty { return s }
        }
        if let p = snap.tasks.last?.progressSummary, !p.isEmpty, !f.isTerminal { return p }
        return f.goal ?? snap.tasks.last?.label ?? snap.tasks.last?.task ?? ""
    }

    /// The cells of a flow row.
    static func cells(_ snap: FlowSnapshot, id: String, now: Timestamp, withQueue: Bool) -> [String] {
        let f = snap.flow
        let summary = TaskSummary(snap.tasks)
        var row = [
            id,
            sanitized(f.ownerKey),
            f.status.rawValue + (f.cancelRequestedAt != nil && !f.isTerminal ? "*" : ""),
            sanitized(step(f)),
            "\(summary.active)/\(summary.total)",
            duration(snap, now: now),
        ]
        if withQueue { row.append(f.queue.map(sanitized) ?? "-") }
        row.append(sanitized(progress(snap)))
        return row
    }

    /// The first line: what this is, the counts, the time.
    static func titleLine(_ model: TopModel, spool: String, now: Timestamp, width: Int, polling: Int64?) -> Line {
        var counts: [String: Int] = [:]
        var ended = 0
        for snap in model.flows.values {
            if snap.flow.isTerminal { ended += 1 } else { counts[snap.flow.status.rawValue, default: 0] += 1 }
        }
        let live = counts.values.reduce(0, +)
        let parts = ["running", "queued", "waiting", "blocked"].compactMap { s in counts[s].map { "\($0) \(s)" } }
        var text = "clawflow top  \(live) live" + (parts.isEmpty ? "" : " (" + parts.joined(separator: ", ") + ")") + ", \(ended) ended recently"
        if let polling { text += ", read every \(DurationText.describe(polling))" }
        let clock = String(now.description.dropFirst(11).prefix(8)) + "Z"
        var line = Line()
        let room = max(0, width - clock.count - 2)
        line.append(text + "  " + sanitized(spool), bold, columns: room, pad: true, within: width)
        line.append("  " + clock, bold, within: width)
        return line
    }

    /// One event as a line: its time, the flow's short id, what happened.
    static func eventLine(_ event: LoggedEvent, id: String, width: Int) -> Line {
        var text = EventText.line(event, Output(json: false, color: false))
        // The stored form starts "<at>  <flowId>"; show the time of day and the short id.
        let at = event.at
        if text.hasPrefix(at) {
            text = String(text.dropFirst(at.count))
            let time = at.count >= 19 ? String(at.dropFirst(11).prefix(8)) : at
            text = time + text
        }
        text = text.replacing(event.flowId, with: id)
        return Line(text, width: width)
    }

    /// The list view.
    static func list(_ model: TopModel, _ view: inout TopView, spool: String, now: Timestamp, width: Int, height: Int, polling: Int64?, allRows: Bool = false)
        -> Frame
    {
        let rows = model.ordered()
        let withQueue = rows.contains { $0.flow.queue != nil }
        let columns = flowColumns(withQueue: withQueue)
        let eventRows = allRows ? min(10, model.events.count) : height >= 16 ? (height - 4) / 3 : height >= 10 ? 3 : 0
        let eventBlock = eventRows > 0 ? eventRows + 1 : 0
        let frameHeight = allRows ? 2 + max(1, rows.count) + eventBlock : height
        let listRows = allRows ? max(1, rows.count) : max(0, frameHeight - 3 - eventBlock)

        // Keep the selection on a row that exists, and in sight.
        var index = rows.firstIndex { $0.flow.flowId == view.selectedFlow } ?? 0
        if rows.isEmpty { index = 0 }
        view.selectedFlow = rows.isEmpty ? nil : rows[min(index, rows.count - 1)].flow.flowId
        index = min(index, max(0, rows.count - 1))
        if index < view.scroll { view.scroll = index }
        if listRows > 0, index >= view.scroll + listRows { view.scroll = index - listRows + 1 }
        view.scroll = max(0, min(view.scroll, max(0, rows.count - listRows)))

        let visible = Array(rows.dropFirst(view.scroll).prefix(listRows))
        let rowCells = visible.map { cells($0, id: Identifier.shortestUniquePrefix(of: $0.flow.flowId, among: model.allIds), now: now, withQueue: withQueue) }
        let widths = Table.widths(columns, rows: rowCells, total: width - 2)

        var frame = Frame(width: width, height: frameHeight)
        frame[0] = titleLine(model, spool: spool, now: now, width: width, polling: polling)
        var head = Line()
        head.append("  ", heading, within: width)
        let headLine = Table.line(columns.map(\.title), widths: widths, total: width - 2)
        for span in headLine.spans { head.append(span.text, heading, within: width) }
        head.fill(to: width, heading)
        frame[1] = head
        if rows.isEmpty, listRows > 0 {
            frame[2] = Line("  No flows in flight.", Style(dim: true), width: width)
        }
        for (i, snap) in visible.enumerated() {
            let selected = !allRows && snap.flow.flowId == view.selectedFlow
            let statusColumn = 2
            var line = Line()
            line.append(selected ? "> " : "  ", selected ? Style(reverse: true) : .plain, within: width)
            let row = Table.line(rowCells[i], widths: widths, total: width - 2) { column in
                var s = column == statusColumn ? statusStyle(snap.flow.status.rawValue) : Style.plain
                s.reverse = selected
                return s
            }
            for span in row.spans { line.append(span.text, span.style, within: width) }
            if selected { line.fill(to: width, Style(reverse: true)) }
            frame[2 + i] = line
        }
        if eventRows > 0 {
            let top = 2 + listRows
            var title = Line()
            title.append("  LATEST EVENTS", heading, within: width)
            title.fill(to: width, heading)
            frame[top] = title
            let shown = model.events.suffix(eventRows)
            for (i, event) in shown.enumerated() {
                frame[top + 1 + i] = eventLine(event, id: Identifier.shortestUniquePrefix(of: event.flowId, among: model.allIds), width: width)
            }
        }
        if !allRows { frame[frameHeight - 1] = footer(view, model: model, width: width, keys: "up/down move  enter tasks  c cancel  q quit") }
        return frame
    }

    /// The last line: a question, a message, or the keys.
    static func footer(_ view: TopView, model: TopModel, width: Int, keys: String) -> Line {
        if let id = view.confirmCancel {
            let owner = model.flows[id].map { " (owner \(sanitized($0.flow.ownerKey)))" } ?? ""
            return Line("Cancel flow \(id)\(owner)? y/n", Style(bold: true, reverse: true), width: width)
        }
        if let message = view.message { return Line(sanitized(message), bold, width: width) }
        if let problem = model.problem { return Line(sanitized(problem), Style(color: .red), width: width) }
        return Line(keys, Style(dim: true), width: width)
    }

    /// The detail view of one flow: its record, its tasks, the tail of a command's output.
    static func detail(_ snap: FlowSnapshot?, flowId: String, model: TopModel, _ view: inout TopView, log: [String], now: Timestamp, width: Int, height: Int)
        -> Frame
    {
        var frame = Frame(width: width, height: height)
        frame[height - 1] = footer(view, model: model, width: width, keys: "up/down task  esc back  c cancel flow  q quit")
        guard let snap else {
            frame[0] = Line("Flow \(flowId) is gone (pruned, or out of view).", bold, width: width)
            return frame
        }
        let f = snap.flow
        var first = Line()
        first.append("flow \(f.flowId)  ", bold, within: width)
        first.append(
            f.status.rawValue + (f.cancelRequestedAt != nil && !f.isTerminal ? " (cancel requested)" : ""), statusStyle(f.status.rawValue), within: width)
        first.append("  owner \(sanitized(f.ownerKey))  \(Render.mode(f.syncMode))  rev \(f.revision)  \(duration(snap, now: now))", within: width)
        frame[0] = first
        var second = "goal: " + sanitized(f.goal ?? "-") + "  step: " + sanitized(step(f))
        if let q = f.queue { second += "  queue: " + sanitized(q) }
        frame[1] = Line(second, width: width)
        var third = ""
        if let b = f.blockedSummary { third = "blocked: " + b }
        if let p = snap.problems.first { third = p.message }
        frame[2] = Line(sanitized(third), Style(color: .red), width: width)

        let columns = [
            Column("TASK", minimum: 13, maximum: 36),
            Column("RUNTIME", minimum: 3, maximum: 10, dropOrder: 2),
            Column("STATUS", minimum: 7, maximum: 10),
            Column("EXIT", minimum: 4, maximum: 8, dropOrder: 3),
            Column("DURATION", minimum: 8, maximum: 9, dropOrder: 1),
            Column("TASK / PROGRESS", minimum: 8, maximum: 400, flexible: true),
        ]
        let taskIds = snap.tasks.map(\.taskId).sorted()
        if view.selectedTask == nil || !snap.tasks.contains(where: { $0.taskId == view.selectedTask }) {
            view.selectedTask = (snap.tasks.last { $0.status.isActive } ?? snap.tasks.last)?.taskId
        }
        let logRows = log.isEmpty ? 0 : max(0, (height - 6) / 2)
        let taskRows = max(0, height - 5 - (logRows > 0 ? logRows + 1 : 0))
        let cells = snap.tasks.map { t -> [String] in
            let end = t.status.isTerminal ? (t.lastEventAt ?? now) : now
            let dur = t.startedAt.map { DurationText.describe(end.seconds(since: $0)) } ?? "-"
            let what = [t.label, t.task, t.progressSummary, t.terminalSummary, t.error].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " — ")
            return [
                Identifier.shortestUniquePrefix(of: t.taskId, among: taskIds), sanitized(t.runtime), t.status.rawValue,
                t.exitCode.map { String($0) } ?? t.signal.map(sanitized) ?? "-", dur, sanitized(what),
            ]
        }
        let widths = Table.widths(columns, rows: cells, total: width - 2)
        var head = Line()
        head.append("  ", heading, within: width)
        for span in Table.line(columns.map(\.title), widths: widths, total: width - 2).spans { head.append(span.text, heading, within: width) }
        head.fill(to: width, heading)
        frame[3] = head
        let index = snap.tasks.firstIndex { $0.taskId == view.selectedTask } ?? 0
        let start = max(0, min(index - taskRows + 1, snap.tasks.count - taskRows))
        for (i, t) in snap.tasks.enumerated().dropFirst(max(0, start)).prefix(taskRows) {
            let selected = t.taskId == view.selectedTask
            var line = Line()
            line.append(selected ? "> " : "  ", selected ? Style(reverse: true) : .plain, within: width)
            for span in Table.line(
                cells[i], widths: widths, total: width - 2,
                style: { c in
                    var s = c == 2 ? statusStyle(t.status.rawValue) : .plain
                    s.reverse = selected
                    return s
                }
            ).spans { line.append(span.text, span.style, within: width) }
            if selected { line.fill(to: width, Style(reverse: true)) }
            frame[4 + i - max(0, start)] = line
        }
        if logRows > 0 {
            let top = 4 + taskRows
            var title = Line()
            title.append("  OUTPUT OF TASK \(view.selectedTask ?? "") (last lines)", heading, within: width)
            title.fill(to: width, heading)
            frame[top] = title
            for (i, text) in log.suffix(logRows).enumerated() { frame[top + 1 + i] = Line(text, width: width) }
        }
        return frame
    }

    /// The last lines of a command's output log (at most the last 64 KiB), as a screen shows
    /// them: a carriage return starts the line over, escape sequences are left out.
    static func tail(ofLog path: String) -> [String] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return [] }
        let size = Int(st.st_size)
        let start = max(0, size - 65536)
        var bytes = [UInt8](repeating: 0, count: size - start)
        var got = 0
        while got < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, $0.count - got, off_t(start + got)) }
            if n > 0 {
                got += n
            } else if n < 0, errno == EINTR {
                continue
            } else {
                break
            }
        }
        var lines = String(decoding: bytes[0..<got], as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if start > 0, !lines.isEmpty { lines.removeFirst() }
        if lines.last == "" { lines.removeLast() }
        return lines.map { line in
            let visible = line.split(separator: "\r", omittingEmptySubsequences: false).last(where: { !$0.isEmpty }).map(String.init) ?? ""
            return stripEscapes(visible)
        }
    }

    /// Text without terminal escape sequences (CSI `ESC [ … final`, OSC `ESC ] … BEL/ST`, two-byte ones).
    static func stripEscapes(_ text: String) -> String {
        guard text.unicodeScalars.contains("\u{1B}") else { return text }
        var out = String.UnicodeScalarView()
        var it = text.unicodeScalars.makeIterator()
        while let s = it.next() {
            guard s == "\u{1B}" else {
                out.append(s)
                continue
            }
            guard let kind = it.next() else { break }
            if kind == "[" {
                while let c = it.next(), !(0x40...0x7E).contains(c.value) {}
            } else if kind == "]" {
                var previous: Unicode.Scalar = " "
                while let c = it.next() {
                    if c == "\u{07}" || (previous == "\u{1B}" && c == "\\") { break }
                    previous = c
                }
            }
        }
        return String(out)
    }
}

/// The live screen: one thread waits in poll() for keys, signals and changes, reads what
/// changed, and draws what differs.
final class TopScreen {
    let settings: TopSettings
    var model = TopModel()
    var view = TopView()
    var spool: Spool?
    var feed: ChangeFeed?
    var pending = SpoolChanges()
    var previous: Frame?
    var logLines: [String] = []
    var logTask: String?

    /// Bursts of changes are read and drawn at most this often.
    static let frameMilliseconds: Int64 = 40

    init(_ settings: TopSettings) { self.settings = settings }

    /// One snapshot, plain text, for stdout that is not a terminal.
    static func snapshot(_ settings: TopSettings) throws(SpoolError) {
        var model = TopModel()
        if let spool = try Spool.openExisting(at: settings.root) { model.load(spool, feed: nil, recent: settings.recentSeconds) }
        var view = TopView()
        let width = environment("COLUMNS").flatMap { Int($0) }.map { max(40, $0) } ?? 160
        let frame = TopLayout.list(model, &view, spool: settings.root.string, now: Spool.now(), width: width, height: 0, polling: nil, allRows: true)
        Output(json: false).print(frame.plainText)
        if let problem = model.problem { Output(json: false).warn(sanitized(problem)) }
    }

    /// Milliseconds on the monotonic clock.
    static func clock() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    func run() throws {
        let signals = try SignalPipe(catching: [SIGINT, SIGTERM, SIGHUP, SIGWINCH])
        defer { signals.close() }
        // The wake pipe: the inotify thread and the cancel thread write a byte to it.
        var wake: [Int32] = [-1, -1]
        guard pipe(&wake) == 0 else { throw TerminalError("Could not create a pipe (errno \(errno)).", errno: errno) }
        for fd in wake {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        defer {
            close(wake[0])
            close(wake[1])
        }
        let wakeWriter = wake[1]
        let notify: @Sendable () -> Void = {
            var byte: UInt8 = 1
            _ = Glibc.write(wakeWriter, &byte, 1)
        }
        let cancels = CancelResults()

        let terminal = Terminal()
        try terminal.enter()
        defer {
            feed?.stop()
            terminal.restore()
        }
        var decoder = KeyDecoder()
        var lastRead: Int64 = 0
        var lastPoll = TopScreen.clock()
        var lastSecond = Spool.now().milliseconds / 1000
        var dirtyScreen = true
        openSpool(notify: notify)
        draw(terminal)

        while true {
            let now = TopScreen.clock()
            var timeout: Int64 = 1000 - Spool.now().milliseconds % 1000
            if !pending.isEmpty { timeout = max(0, lastRead + TopScreen.frameMilliseconds - now) }
            if decoder.hasPending { timeout = min(timeout, 30) }
            if spool == nil { timeout = min(timeout, 1000) }
            var fds = [
                pollfd(fd: terminal.input, events: Int16(POLLIN), revents: 0),
                pollfd(fd: signals.descriptor, events: Int16(POLLIN), revents: 0),
                pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&fds, nfds_t(fds.count), Int32(timeout))
            if ready < 0, errno != EINTR { break }

            // Signals first: a stop ends the loop, a resize lays the screen out again.
            var quit = false
            for sig in signals.take() {
                if sig == SIGWINCH {
                    previous = nil
                    dirtyScreen = true
                } else {
                    quit = true
                }
            }
            if quit { break }

            if fds[0].revents != 0 {
                guard let bytes = terminal.readInput() else { break }
                for key in decoder.feed(bytes) where handle(key, cancels: cancels, notify: notify) == false { quit = true }
                dirtyScreen = true
            } else if decoder.hasPending {
                for key in decoder.flush() where handle(key, cancels: cancels, notify: notify) == false { quit = true }
                dirtyScreen = true
            }
            if quit { break }

            if fds[2].revents != 0 {
                var sink = [UInt8](repeating: 0, count: 256)
                while read(wake[0], &sink, sink.count) > 0 {}
                if let feed {
                    let changes = feed.take()
                    pending.flows.formUnion(changes.flows)
                    pending.logs.formUnion(changes.logs)
                    pending.overflow = pending.overflow || changes.overflow
                }
                if let message = cancels.take() {
                    view.message = message
                    dirtyScreen = true
                }
            }

            if spool == nil {
                openSpool(notify: notify)
                if spool != nil { dirtyScreen = true }
            } else if let seconds = settings.pollSeconds, TopScreen.clock() - lastPoll >= seconds * 1000 {
                pending.overflow = true
                lastPoll = TopScreen.clock()
            }

            if !pending.isEmpty, TopScreen.clock() - lastRead >= TopScreen.frameMilliseconds, let spool {
                let changes = pending
                pending = SpoolChanges()
                if changes.overflow {
                    model.load(spool, feed: feed, recent: settings.recentSeconds)
                } else if !changes.flows.isEmpty {
                    model.refresh(changes.flows, spool, feed: feed, recent: settings.recentSeconds)
                }
                if case .detail(let id) = view.mode, changes.overflow || changes.flows.contains(id) || changes.logs.contains(id) {
                    logTask = nil
                }
                lastRead = TopScreen.clock()
                dirtyScreen = true
            }

            let second = Spool.now().milliseconds / 1000
            if second != lastSecond {
                lastSecond = second
                _ = model.expire(now: Spool.now(), recent: settings.recentSeconds)
                dirtyScreen = true
            }
            if dirtyScreen {
                draw(terminal)
                dirtyScreen = false
            }
        }
    }

    /// Opens the spool once it exists, starting the change feed before the first read.
    func openSpool(notify: @escaping @Sendable () -> Void) {
        guard spool == nil else { return }
        let opened: Spool?
        do throws(SpoolError) { opened = try Spool.openExisting(at: settings.root) } catch {
            model.problem = error.message
            return
        }
        guard let opened else {
            model.problem = "No spool at \(settings.root) yet; waiting for one."
            return
        }
        model.problem = nil
        if settings.pollSeconds == nil, Watcher.automaticMode(for: settings.root).mode == .inotify {
            do throws(WatchError) {
                let feed = try ChangeFeed(root: settings.root, notify: notify)
                try feed.start()
                self.feed = feed
            } catch {
                model.problem = error.message + " Reading the spool every 2 s instead."
            }
        }
        spool = opened
        model.load(opened, feed: feed, recent: settings.recentSeconds)
    }

    /// The polling interval shown in the title, when polling.
    var pollingInterval: Int64? { feed == nil ? (settings.pollSeconds ?? 2) : nil }

    func draw(_ terminal: Terminal) {
        let (width, height) = terminal.size()
        let now = Spool.now()
        let frame: Frame
        switch view.mode {
        case .list:
            frame = TopLayout.list(model, &view, spool: settings.root.string, now: now, width: width, height: height, polling: pollingInterval)
        case .detail(let id):
            let snap = model.flows[id]
            var probe = view
            _ = TopLayout.detail(snap, flowId: id, model: model, &probe, log: [], now: now, width: width, height: height)
            if let task = probe.selectedTask, logTask != task || logLines.isEmpty {
                logTask = task
                let record = snap?.tasks.first { $0.taskId == task }
                logLines = record.flatMap { $0.isCommand ? $0.logPath : nil }.map(TopLayout.tail(ofLog:)) ?? []
            }
            frame = TopLayout.detail(snap, flowId: id, model: model, &view, log: logLines, now: now, width: width, height: height)
        }
        let bytes = Renderer.draw(frame, over: previous, color: settings.color)
        if !bytes.isEmpty { terminal.write(bytes) }
        previous = frame
    }

    /// Acts on a key; false when it quits.
    func handle(_ key: Key, cancels: CancelResults, notify: @escaping @Sendable () -> Void) -> Bool {
        if let id = view.confirmCancel {
            view.confirmCancel = nil
            if key == .character("y") || key == .character("Y") {
                startCancel(id, cancels: cancels, notify: notify)
            } else {
                view.message = "Not cancelled."
            }
            return true
        }
        view.message = nil
        switch key {
        case .character("q"), .control("c"), .control("d"): return false
        case .character("c"):
            let id: String? =
                switch view.mode {
                case .list: view.selectedFlow
                case .detail(let id): id
                }
            guard let id, let snap = model.flows[id] else { return true }
            if snap.flow.isTerminal {
                view.message = "Flow \(id) is already \(snap.flow.status.rawValue)."
            } else {
                view.confirmCancel = id
            }
        default:
            switch view.mode {
            case .list: moveInList(key)
            case .detail: moveInDetail(key)
            }
        }
        return true
    }

    func moveInList(_ key: Key) {
        let rows = model.ordered().map(\.flow.flowId)
        guard !rows.isEmpty else { return }
        let page = max(1, (previous?.height ?? 24) / 2)
        let index = rows.firstIndex { $0 == view.selectedFlow } ?? 0
        var next = index
        switch key {
        case .up, .character("k"): next = index - 1
        case .down, .character("j"): next = index + 1
        case .pageUp: next = index - page
        case .pageDown: next = index + page
        case .home, .character("g"): next = 0
        case .end, .character("G"): next = rows.count - 1
        case .enter, .right:
            if let id = view.selectedFlow {
                view.mode = .detail(id)
                view.selectedTask = nil
                logTask = nil
                logLines = []
            }
            return
        default: return
        }
        view.selectedFlow = rows[max(0, min(rows.count - 1, next))]
    }

    func moveInDetail(_ key: Key) {
        guard case .detail(let id) = view.mode else { return }
        switch key {
        case .escape, .left, .backspace, .character("h"):
            view.mode = .list
            view.selectedFlow = id
            logLines = []
            logTask = nil
            return
        default: break
        }
        guard let tasks = model.flows[id]?.tasks.map(\.taskId), !tasks.isEmpty else { return }
        let index = tasks.firstIndex { $0 == view.selectedTask } ?? 0
        var next = index
        switch key {
        case .up, .character("k"): next = index - 1
        case .down, .character("j"): next = index + 1
        case .home: next = 0
        case .end: next = tasks.count - 1
        default: return
        }
        view.selectedTask = tasks[max(0, min(tasks.count - 1, next))]
        logTask = nil
        logLines = []
    }

    /// Cancels a flow on a thread of its own (a command task may take its grace period to
    /// stop), reporting the outcome through `cancels` and the wake pipe.
    func startCancel(_ flowId: String, cancels: CancelResults, notify: @escaping @Sendable () -> Void) {
        guard let spool else { return }
        view.message = "Cancelling \(flowId)..."
        let grace = settings.grace
        DispatchQueue(label: "clawflow.top.cancel").async {
            let text: String
            do throws(SpoolError) {
                switch try spool.cancel(flowId: flowId, grace: grace, source: "cli") {
                case .cancelled(let snap):
                    text = "Cancelled \(snap.flow.flowId) (\(snap.flow.syncMode.rawValue)) with status \(snap.flow.status.rawValue)."
                case .stillActive(let snap):
                    let active = snap.tasks.filter { $0.status.isActive }.count
                    text = "Cancel requested for \(snap.flow.flowId); waiting for \(active) active task(s)."
                }
            } catch {
                text = error.message
            }
            cancels.put(text)
            notify()
        }
    }
}

/// Outcomes of cancels, handed from their thread to the screen's.
final class CancelResults: Sendable {
    private let latest = Mutex<String?>(nil)

    func put(_ text: String) { latest.withLock { $0 = text } }

    func take() -> String? {
        latest.withLock { value in
            defer { value = nil }
            return value
        }
    }
}
