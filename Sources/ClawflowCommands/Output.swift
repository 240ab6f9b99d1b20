import ClawflowModel
import ClawflowSpool
import Glibc
import Synchronization
import SystemPackage

/// All printing: data to stdout, diagnostics to stderr, JSON or text, colour only on a
/// terminal without NO_COLOR (README, "Output and exit codes").
struct Output: Sendable {
    /// Print JSON instead of text.
    let json: Bool
    /// Colour the text.
    let color: Bool
    /// Whether a JSON document went to stdout already (an invocation prints at most one).
    private let emitted = Emitted()

    private final class Emitted: Sendable {
        let flag = Atomic<Bool>(false)
    }

    init(json: Bool) {
        self.json = json
        self.color = !json && isatty(1) == 1 && environment("NO_COLOR") == nil
    }

    /// Output with colour decided by the caller (`top` draws its own colours).
    init(json: Bool, color: Bool) {
        self.json = json
        self.color = color
    }

    // MARK: Streams

    /// Writes text to stdout.
    func print(_ text: String) { write(1, text + "\n") }

    /// Writes a diagnostic to stderr.
    func warn(_ text: String) { write(2, "clawflow: " + text + "\n") }

    /// Writes one JSON document to stdout.
    func emit(_ value: JSON) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(1 << 16)
        value.write(into: &bytes, indent: 0, pretty: true)
        bytes.append(0x0A)
        writeBytes(1, bytes)
        emitted.flag.store(true, ordering: .relaxed)
    }

    /// Writes one value as a line of JSON Lines: compact, keys sorted.
    func emitLine(_ value: JSON) {
        write(1, value.compact() + "\n")
        emitted.flag.store(true, ordering: .relaxed)
    }

    /// Whether something went to stdout as JSON already.
    var hasEmitted: Bool { emitted.flag.load(ordering: .relaxed) }

    /// Writes one JSON document whose array members in `rendered` were already printed, one
    /// item each, at the indentation of an array item in a top-level member (so a big listing
    /// can be rendered in parallel). Keys are sorted across both kinds.
    func emit(_ members: [String: JSON], rendered: [String: [[UInt8]]]) {
        // Written in batches of about 1 MiB: a listing of 10,000 flows is 18 MB, which one
        // buffer would copy once more and fault in page by page.
        let batch = 1 << 20
        var bytes: [UInt8] = []
        bytes.reserveCapacity(batch + (1 << 16))
        bytes.append(UInt8(ascii: "{"))
        let keys = (Array(members.keys) + Array(rendered.keys)).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        for (i, key) in keys.enumerated() {
            bytes.append(contentsOf: Array((i == 0 ? "\n  " : ",\n  ").utf8))
            JSON.string(key).write(into: &bytes, indent: 1, pretty: true)
            bytes.append(contentsOf: Array(": ".utf8))
            if let value = members[key] {
                value.write(into: &bytes, indent: 1, pretty: true)
            } else if let items = rendered[key], !items.isEmpty {
                bytes.append(UInt8(ascii: "["))
                for (j, item) in items.enumerated() {
                    bytes.append(contentsOf: Array((j == 0 ? "\n    " : ",\n    ").utf8))
                    if bytes.count + item.count > batch, !bytes.isEmpty {
                        writeBytes(1, bytes)
                        bytes.removeAll(keepingCapacity: true)
                    }
                    bytes.append(contentsOf: item)
                }
                bytes.append(contentsOf: Array("\n  ]".utf8))
            } else {
                bytes.append(contentsOf: Array("[]".utf8))
            }
        }
        bytes.append(contentsOf: Array("\n}\n".utf8))
        writeBytes(1, bytes)
        emitted.flag.store(true, ordering: .relaxed)
    }

    /// Prints a failure: the JSON error object on stdout with --json (unless the command
    /// already printed its document, which then carries the problems), else a line on stderr.
    func fail(_ error: SpoolError) {
        if json {
            if emitted.flag.load(ordering: .relaxed) { return }
            var body: [String: JSON] = ["code": .string(error.code.rawValue), "message": .string(error.message)]
            if let path = error.path { body["path"] = .string(path.string) }
            if let e = error.errno { body["errno"] = .int(e.rawValue) }
            if let current = error.current { body["current"] = current }
            emit(.object(["ok": false, "error": .object(JSONObject(body))]))
        } else {
            warn(sanitized(error.message))
        }
    }

    private func write(_ fd: Int32, _ text: String) { writeBytes(fd, Array(text.utf8)) }

    private func writeBytes(_ fd: Int32, _ bytes: [UInt8]) {
        // writeFully, not swift-system's writeAll: see writeFully.
        _ = try? FileDescriptor(rawValue: fd).writeFully(bytes)
    }

    // MARK: Text helpers

    /// Colours a status word when colour is on.
    func status(_ word: String) -> String {
        guard color else { return word }
        let code =
            switch word {
            case "succeeded": "32"
            case "failed", "lost", "timed_out": "31"
            case "running", "waiting", "blocked": "33"
            case "cancelled": "2"
            default: "36"
            }
        return "\u{1B}[\(code)m\(word)\u{1B}[0m"
    }

    /// Makes a bold heading when colour is on.
    func bold(_ text: String) -> String { color ? "\u{1B}[1m\(text)\u{1B}[0m" : text }

    /// Prints rows as left-aligned columns; the last column is not padded.
    func table(_ header: [String], _ rows: [[String]]) {
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], visibleWidth(cell)) } }
        // Appended cell by cell: [String].joined(separator:) runs unspecialised here, and its
        // first use costs a conformance lookup (bench/README.md, "Start-up").
        func line(_ cells: [String]) -> String {
            var text = ""
            for (i, cell) in cells.enumerated() {
                if i > 0 { text += "  " }
                text += cell
                if i < cells.count - 1 { text += String(repeating: " ", count: widths[i] - visibleWidth(cell)) }
            }
            return text
        }
        print(bold(line(header)))
        for row in rows { print(line(row)) }
    }

    private func visibleWidth(_ s: String) -> Int {
        var n = 0
        var inEscape = false
        for ch in s {
            if ch == "\u{1B}" {
                inEscape = true
                continue
            }
            if inEscape {
                if ch == "m" { inEscape = false }
                continue
            }
            n += 1
        }
        return n
    }
}

/// JSON shapes of spool-layout.md / README ("JSON output").
enum Render {
    /// A flow with its tasks and task summary, as `flows show --json` prints it.
    /// Appends the text `flow(snap)` is written as, without building that object (a listing
    /// prints thousands).
    static func writeFlow(_ snap: FlowSnapshot, into out: inout [UInt8], indent: Int) {
        var extra: [(key: String, value: JSON)] = []
        if !snap.problems.isEmpty {
            extra.append(("problems", .array(snap.problems.map { .object(["path": .string($0.path.string), "message": .string($0.message)]) })))
        }
        extra.append(("taskSummary", TaskSummary(snap.tasks).json))
        extra.append(("tasks", .array(snap.tasks.map { .object($0.fields) })))
        snap.flow.fields.write(into: &out, indent: indent, pretty: true, setting: extra)
    }

    static func flow(_ snap: FlowSnapshot) -> JSON {
        var o = snap.flow.fields
        o["tasks"] = .array(snap.tasks.map { .object($0.fields) })
        o["taskSummary"] = TaskSummary(snap.tasks).json
        if !snap.problems.isEmpty {
            o["problems"] = .array(snap.problems.map { .object(["path": .string($0.path.string), "message": .string($0.message)]) })
        }
        return .object(o)
    }

    /// A short single-line text for a table cell.
    static func cell(_ text: String?, max: Int = 48) -> String {
        guard let text, !text.isEmpty else { return "-" }
        let clean = sanitized(text).replacing("\n", with: " ")
        return clean.count > max ? String(clean.prefix(max - 1)) + "…" : clean
    }

    /// "task_mirrored" → "mirrored" for tables.
    static func mode(_ m: SyncMode) -> String { m == .taskMirrored ? "mirrored" : "managed" }
}
