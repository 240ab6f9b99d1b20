import ClawflowTestSupport
import Foundation
import Glibc
import Testing

// Small helpers shared by the end-to-end suites: reading the spool's files, parsing
// output, and running the binary under `timeout`, `env` or `script`.

/// Parses text as a JSON object, or nil.
func jsonObject(_ text: String) -> [String: Any]? {
    guard let data = text.data(using: .utf8) else { return nil }
    return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
}

/// The keys of a JSON object, sorted (for comparing key sets).
func keys(_ object: [String: Any]?) -> [String] { (object?.keys).map { $0.sorted() } ?? [] }

/// The top-level keys of a pretty-printed JSON object, in the order they appear in the text.
func topLevelKeys(_ text: String) -> [String] {
    text.split(separator: "\n", omittingEmptySubsequences: false).compactMap { line -> String? in
        guard line.hasPrefix("  \""), !line.hasPrefix("   ") else { return nil }
        let rest = line.dropFirst(3)
        guard let end = rest.range(of: "\":") else { return nil }
        return String(rest[..<end.lowerBound])
    }
}

/// True when every object in a pretty-printed JSON text lists its keys in sorted order.
func keysSortedEverywhere(_ text: String) -> Bool {
    var stack: [[String]] = [[]]
    var ok = true
    for raw in text.split(separator: "\n") {
        let line = raw.drop(while: { $0 == " " })
        if line.hasPrefix("}") || line.hasPrefix("]") {
            let done = stack.popLast() ?? []
            if done != done.sorted() { ok = false }
        }
        if line.hasPrefix("\""), let end = line.range(of: "\": ") ?? line.range(of: "\":") {
            let key = String(line[line.index(after: line.startIndex)..<end.lowerBound])
            if stack.isEmpty { stack.append([]) }
            stack[stack.count - 1].append(key)
        }
        if line.hasSuffix("{") || line.hasSuffix("[") { stack.append([]) }
    }
    for level in stack where level != level.sorted() { ok = false }
    return ok
}

/// The value at `key` of the `error` object of a `{"ok": false, "error": {...}}` document.
func errorField(_ object: [String: Any]?, _ key: String) -> String? {
    (object?["error"] as? [String: Any])?[key] as? String
}

/// True when `text` contains an ESC, BEL or other C0 control byte other than newline.
func hasControlCharacters(_ text: String) -> Bool {
    text.unicodeScalars.contains { ($0.value < 0x20 && $0 != "\n") || $0.value == 0x7F || $0.value == 0x202E }
}

/// A lowercase UUIDv7 string.
func isUUIDv7(_ text: String) -> Bool {
    let pattern = #/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/#
    return text.wholeMatch(of: pattern) != nil
}

/// Quotes a word for `sh -c`.
func shellQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

extension TemporarySpool {
    /// Runs clawflow under `timeout`, so a command that blocks (on a FIFO, say) fails the
    /// test with status 124 instead of hanging it.
    func runGuarded(_ arguments: [String], seconds: Int = 15) -> (result: CommandResult, elapsed: Double) {
        let start = Date()
        let r = runProgram("/usr/bin/timeout", ["-s", "KILL", String(seconds), Clawflow.binary, "--spool", path] + arguments)
        return (r, Date().timeIntervalSince(start))
    }

    /// `clawflow run ARGS` (which must succeed); returns the flow id and task id it printed.
    @discardableResult
    func startJob(_ args: [String], sourceLocation: SourceLocation = #_sourceLocation) -> (flow: String, task: String) {
        let r = run(["run"] + args)
        #expect(r.status == 0, "run \(args): \(r.stderr)", sourceLocation: sourceLocation)
        let parts = r.stdout.split(separator: " ").map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(parts.count == 2, "run printed \(r.stdout)", sourceLocation: sourceLocation)
        return (parts.first ?? "", parts.last ?? "")
    }

    /// Adds a task in a new mirrored flow; returns the task id and its flow id.
    @discardableResult
    func addTask(
        owner: String, runtime: String = "cron", status: String = "queued", _ extra: [String] = [],
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> (task: String, flow: String) {
        let record = json(["tasks", "add", "--owner=\(owner)", "--runtime", runtime, "--status", status] + extra, sourceLocation: sourceLocation)
        return (record["taskId"] as? String ?? "", record["parentFlowId"] as? String ?? "")
    }

    /// Links a task to an existing flow; returns the task id.
    @discardableResult
    func linkTask(
        to flow: String, runtime: String = "cron", status: String = "queued", _ extra: [String] = [],
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> String {
        value(["tasks", "add", flow, "--runtime", runtime, "--status", status] + extra, sourceLocation: sourceLocation)
    }

    /// Creates a managed flow; returns its id.
    @discardableResult
    func createFlow(
        owner: String, goal: String = "a job", controller: String = "my-controller", _ extra: [String] = [],
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> String {
        value(["flows", "create", "--owner=\(owner)", "--goal", goal, "--controller", controller] + extra, sourceLocation: sourceLocation)
    }

    /// The text of a file inside the spool, or nil.
    func text(_ relative: String) -> String? { try? String(contentsOfFile: file(relative), encoding: .utf8) }

    /// A JSON file inside the spool, parsed.
    func record(_ relative: String) -> [String: Any] { text(relative).flatMap(jsonObject) ?? [:] }

    /// A flow's manifest.
    func manifest(_ flowId: String) -> [String: Any] { record("flows/\(flowId)/manifest.json") }

    /// A task's record file.
    func taskRecord(_ flowId: String, _ taskId: String) -> [String: Any] { record("flows/\(flowId)/tasks/\(taskId).json") }

    /// A flow's events.jsonl, one object per line.
    func events(_ flowId: String) -> [[String: Any]] {
        (text("flows/\(flowId)/events.jsonl") ?? "").split(separator: "\n").compactMap { jsonObject(String($0)) }
    }

    /// The flow ids under flows/, oldest first.
    func flowDirectories() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: file("flows"))) ?? []).sorted()
    }

    /// What `owners/<name>` points at, or nil.
    func ownerLink(_ name: String) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: file("owners/" + name))
    }

    /// The names in `owners/`.
    func ownerNames() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: file("owners"))) ?? []).sorted()
    }

    /// Whether the spool directory exists.
    var exists: Bool { FileManager.default.fileExists(atPath: path) }

    /// Two managed flows whose ids share their first 8 characters (UUIDv7 ids made within
    /// the same ~65 s do; a third is made if the first two straddle a boundary).
    func twoFlowsSharingPrefix(sourceLocation: SourceLocation = #_sourceLocation) -> (String, String) {
        var ids = [createFlow(owner: "prefix-a", sourceLocation: sourceLocation), createFlow(owner: "prefix-b", sourceLocation: sourceLocation)]
        if ids[0].prefix(8) != ids[1].prefix(8) {
            ids.append(createFlow(owner: "prefix-c", sourceLocation: sourceLocation))
            ids.removeFirst()
        }
        return (ids[0], ids[1])
    }

    /// Two tasks (in two new flows) whose ids share their first 8 characters.
    func twoTasksSharingPrefix(sourceLocation: SourceLocation = #_sourceLocation) -> (String, String) {
        var ids = [addTask(owner: "tp-a", sourceLocation: sourceLocation).task, addTask(owner: "tp-b", sourceLocation: sourceLocation).task]
        if ids[0].prefix(8) != ids[1].prefix(8) {
            ids.append(addTask(owner: "tp-c", sourceLocation: sourceLocation).task)
            ids.removeFirst()
        }
        return (ids[0], ids[1])
    }
}

/// The lines of the file at `path` (none when it does not exist).
func fileLines(_ path: String) -> [String] {
    ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
}

/// `run` arguments for a command that waits until the file `gate` exists, then appends `name`
/// to the file `out` and exits with `code`.
func gatedCommand(_ gate: String, _ out: String, _ name: String, exit code: Int = 0) -> [String] {
    ["--", "sh", "-c", "while [ ! -e \(gate) ]; do sleep 0.02; done; echo \(name) >> \(out); exit \(code)"]
}

/// A new spool whose queue `name` has `slots` slots, and the gate and output files for
/// `gatedCommand` beside it.
func gatedQueue(_ name: String, slots: Int, sourceLocation: SourceLocation = #_sourceLocation) -> (TemporarySpool, gate: String, out: String) {
    let tmp = TemporarySpool()
    #expect(tmp.run(["queue", "set", name, "--slots", String(slots)]).status == 0, sourceLocation: sourceLocation)
    return (tmp, tmp.parent + "/gate", tmp.parent + "/out")
}

/// The lines of a command's stdout, without the final empty one.
func lines(_ text: String) -> [String] {
    text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty }
}

/// The message clawflow prints when a flow lookup finds nothing.
func flowNotFound(_ lookup: String) -> String {
    "Flow not found: \(lookup). Run clawflow flows list to see recent flow ids."
}

/// The message clawflow prints when a task lookup finds nothing.
func taskNotFound(_ lookup: String) -> String {
    "Task not found: \(lookup). Run clawflow tasks list to see recent task ids."
}

/// True when two parsed JSON values are equal (objects compared as dictionaries).
func sameJSON(_ a: Any?, _ b: Any?) -> Bool {
    switch (a, b) {
    case (nil, nil): return true
    case (let x?, let y?): return NSArray(array: [x]).isEqual(to: [y])
    default: return false
    }
}
