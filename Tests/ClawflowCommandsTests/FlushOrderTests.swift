import ClawflowTestSupport
import Foundation
import Testing

/// Checks the durability protocol on an `strace -f -y` log of one clawflow command: every
/// rename publishes only what was flushed (a file's bytes since its last write, a directory's
/// entries since its last change), and both directories a rename or a link touches are
/// flushed after it, before the command ends or a drop's name is deleted.
struct FlushTrace {
    enum Event {
        case wrote(String)  // bytes written to a file
        case changed(String)  // entries of a directory changed
        case flushed(String)  // fsync/fdatasync of a file or directory
        case flushedAll  // syncfs
        case renamed(from: String, to: String)  // rename/renameat/renameat2 (full paths)
        case linked(from: String, to: String)
        case unlinked(String)
    }

    var events: [Event] = []

    /// The path strace -y printed for the descriptor at the start of `text` ("5</a/b>").
    static func fdPath(_ text: Substring) -> String? {
        guard let open = text.firstIndex(of: "<"), let close = text[open...].firstIndex(of: ">") else { return nil }
        return String(text[text.index(after: open)..<close])
    }

    /// The arguments of a call line, split at top-level commas (strings are quoted).
    static func arguments(_ line: Substring) -> [Substring] {
        guard let open = line.firstIndex(of: "(") else { return [] }
        var out: [Substring] = []
        var depth = 0
        var inString = false
        var escaped = false
        var start = line.index(after: open)
        var i = start
        while i < line.endIndex {
            let c = line[i]
            if inString {
                if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { inString = false }
            } else if c == "\"" {
                inString = true
            } else if c == "(" || c == "[" || c == "{" {
                depth += 1
            } else if c == ")" || c == "]" || c == "}" {
                if depth == 0 {
                    out.append(line[start..<i])
                    return out
                }
                depth -= 1
            } else if c == ",", depth == 0 {
                out.append(line[start..<i])
                start = line.index(after: i)
            }
            i = line.index(after: i)
        }
        return out
    }

    static func name(_ arg: Substring) -> String { String(arg.trimmingCharacters(in: .whitespaces).dropFirst().dropLast()) }

    init(lines: [String]) {
        var pending: [String: String] = [:]  // pid -> the start of an unfinished call
        for raw in lines {
            var line = Substring(raw)
            guard let space = line.firstIndex(of: " ") else { continue }
            let pid = String(line[..<space])
            line = line[line.index(after: space)...].drop { $0 == " " }  // strace pads the pid
            if line.hasSuffix("<unfinished ...>") {
                pending[pid] = String(line.dropLast("<unfinished ...>".count))
                continue
            }
            if line.hasPrefix("<... "), let start = pending.removeValue(forKey: pid), let close = line.range(of: "resumed>") {
                line = Substring(start + line[close.upperBound...])
            }
            // strace pads the return value of a resumed call: ")     = 0".
            line = Substring(line.replacing(#/\)\s+= /#, with: ") = "))
            guard let result = line.range(of: ") = ", options: .backwards), line[result.upperBound...].hasPrefix("-") == false else { continue }
            let args = Self.arguments(line)
            let call = line.prefix { $0 != "(" }
            func path(_ i: Int) -> String? { i < args.count ? Self.fdPath(args[i]) : nil }
            switch call {
            case "write", "pwrite64", "writev":
                if let p = path(0) { events.append(.wrote(p)) }
            case "fsync", "fdatasync":
                if let p = path(0) { events.append(.flushed(p)) }
            case "syncfs":
                events.append(.flushedAll)
            case "openat":
                if let d = path(0), args.count > 2, args[2].contains("O_CREAT"), let created = Self.fdPath(line[result.upperBound...]) {
                    _ = d
                    events.append(.changed(String(created.split(separator: "/").dropLast().joined(separator: "/")).withRoot))
                }
            case "mkdirat", "symlinkat":
                let dirArg = call == "mkdirat" ? 0 : 1
                if let d = path(dirArg) { events.append(.changed(d)) }
            case "rename", "renameat", "renameat2":
                if let a = path(0), let b = path(2), args.count > 3 {
                    events.append(.renamed(from: a + "/" + Self.name(args[1]), to: b + "/" + Self.name(args[3])))
                }
            case "linkat":
                if let a = path(0), let b = path(2), args.count > 3 {
                    events.append(.linked(from: a + "/" + Self.name(args[1]), to: b + "/" + Self.name(args[3])))
                }
            case "unlinkat":
                if let d = path(0), args.count > 1 { events.append(.unlinked(d + "/" + Self.name(args[1]))) }
            default:
                break
            }
        }
    }

    /// What breaks the protocol, a sentence each; `spool` limits the check to that tree.
    func violations(spool: String) -> [String] {
        var dirtyFiles = Set<String>()
        var dirtyDirs = Set<String>()
        var owed: [(dir: String, because: String)] = []
        var out: [String] = []
        func parent(_ p: String) -> String { String(p[..<(p.lastIndex(of: "/") ?? p.endIndex)]) }
        func settle(_ dir: String?) { owed.removeAll { dir == nil || $0.dir == dir } }
        for event in events {
            switch event {
            case .wrote(let p) where p.hasPrefix(spool):
                dirtyFiles.insert(p)
            case .changed(let d) where d.hasPrefix(spool):
                dirtyDirs.insert(d)
            case .flushed(let p):
                dirtyFiles.remove(p)
                dirtyDirs.remove(p)
                settle(p)
            case .flushedAll:
                dirtyFiles.removeAll()
                dirtyDirs.removeAll()
                settle(nil)
            case .renamed(let from, let to) where from.hasPrefix(spool):
                // What it publishes is flushed: the file's bytes, or a directory's entries and
                // the files below it. A flow renamed into tmp/ (pruned) publishes nothing.
                let graveyard = to.hasPrefix(spool + "/tmp/")
                if graveyard {
                } else if dirtyFiles.contains(from) {
                    out.append("\(from) was renamed to \(to) before its bytes were flushed")
                }
                for d in dirtyDirs where !graveyard && (d == from || d.hasPrefix(from + "/")) {
                    out.append("\(from) was renamed to \(to) before the entries of \(d) were flushed")
                }
                for f in dirtyFiles where !graveyard && f.hasPrefix(from + "/") { out.append("\(from) was renamed to \(to) before \(f) was flushed") }
                for dir in Set([parent(from), parent(to)]) { owed.append((dir, "the rename of \(from) to \(to)")) }
            case .linked(let from, let to) where from.hasPrefix(spool):
                if dirtyFiles.contains(from) { out.append("\(from) was linked as \(to) before its bytes were flushed") }
            case .unlinked(let p) where p.hasPrefix(spool + "/incoming/new/") || p.hasPrefix(spool + "/incoming/claimed/"):
                for o in owed { out.append("a drop's name \(p) was deleted before \(o.dir) was flushed after \(o.because)") }
            default:
                break
            }
        }
        for o in owed { out.append("the command ended before \(o.dir) was flushed after \(o.because)") }
        return out
    }
}

private extension String {
    /// A path that lost its leading "/" when split and joined.
    var withRoot: String { hasPrefix("/") ? self : "/" + self }
}

@Suite("Every write path flushes what it publishes and both directories of each rename", .serialized)
struct FlushOrderTests {
    /// Runs clawflow under strace and returns the violations of its log.
    func traced(_ tmp: TemporarySpool, _ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> [String] {
        let log = tmp.parent + "/trace.log"
        let calls = "trace=openat,write,pwrite64,writev,fsync,fdatasync,syncfs,mkdirat,symlinkat,rename,renameat,renameat2,linkat,unlinkat"
        let r = runProgram("/usr/bin/strace", ["-f", "-qq", "-y", "-e", calls, "-o", log, "--", Clawflow.binary, "--spool", tmp.path] + arguments)
        #expect(
            r.status == 0 || arguments.first == "fsck", "clawflow \(arguments.joined(separator: " ")) exited \(r.status): \(r.stderr)",
            sourceLocation: sourceLocation)
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map(String.init)
        let trace = FlushTrace(lines: lines)
        #expect(
            trace.events.contains { if case .renamed = $0 { true } else { false } }, "the trace shows renames: \(lines.prefix(5))",
            sourceLocation: sourceLocation)
        return trace.violations(spool: tmp.path)
    }

    /// Runs clawflow under strace and records every violation of its log.
    func expectClean(_ tmp: TemporarySpool, _ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let found = try traced(tmp, arguments, sourceLocation: sourceLocation)
        #expect(found.isEmpty, "clawflow \(arguments.joined(separator: " ")):\n\(found.joined(separator: "\n"))", sourceLocation: sourceLocation)
    }

    @Test("the checker finds a file renamed before its bytes were flushed, and a rename whose directory was not flushed after")
    func checkerCatches() {
        let lines = [
            #"10 openat(3</s/flows/f>, ".m.tmp", O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW, 0600) = 4</s/flows/f/.m.tmp>"#,
            #"10 write(4</s/flows/f/.m.tmp>, "{}", 2) = 2"#,
            #"10 renameat(3</s/flows/f>, ".m.tmp", 3</s/flows/f>, "manifest.json") = 0"#,
        ]
        let found = FlushTrace(lines: lines).violations(spool: "/s")
        #expect(found.count == 2 && found[0].contains("before its bytes were flushed") && found[1].contains("ended before /s/flows/f was flushed"), "\(found)")
        let fixed = [
            lines[0], lines[1], "11 fsync(4</s/flows/f/.m.tmp> <unfinished ...>", "11 <... fsync resumed>)      = 0", lines[2], "10 fsync(3</s/flows/f>) = 0",
        ]
        #expect(FlushTrace(lines: fixed).violations(spool: "/s").isEmpty)
    }

    @Test("a new flow, a transition, an owner link that moves")
    func taskWrites() throws {
        let tmp = TemporarySpool()
        tmp.value(["init"])
        try expectClean(tmp, ["tasks", "add", "--owner", "o", "--runtime", "cron", "--task-id", "0b5f7f3e-1d2c-4b8a-9e6f-000000000001", "--status", "running"])
        try expectClean(tmp, ["tasks", "set", "0b5f7f3e-1d2c-4b8a-9e6f-000000000001", "--status", "running", "--progress", "half"])
        // A second flow of the owner, newer; when it ends the link moves back to the first.
        let second = tmp.addTask(owner: "o", status: "running")
        #expect(tmp.ownerLink("o") == "../flows/\(second.flow)")
        try expectClean(tmp, ["tasks", "set", second.task, "--status", "succeeded"])
        #expect(tmp.ownerLink("o") != "../flows/\(second.flow)")
    }

    @Test("drops: claimed, applied, recorded and deleted, new flows and updates")
    func drops() throws {
        let tmp = TemporarySpool()
        tmp.value(["init"])
        for (name, json) in [
            ("a.json", #"{"kind":"task","ownerKey":"d","runtime":"cron","runId":"r1","status":"running"}"#),
            ("b.json", #"{"kind":"task","ownerKey":"e","runtime":"cron","runId":"r2"}"#),
        ] {
            #expect(FileManager.default.createFile(atPath: tmp.file("incoming/new/" + name), contents: Data(json.utf8)))
        }
        try expectClean(tmp, ["ingest"])
        #expect(
            FileManager.default.createFile(
                atPath: tmp.file("incoming/new/c.json"), contents: Data(#"{"kind":"task-update","runId":"r1","status":"succeeded"}"#.utf8)))
        #expect(FileManager.default.createFile(atPath: tmp.file("incoming/new/bad.json"), contents: Data("nope".utf8)))
        try expectClean(tmp, ["ingest"])
    }

    @Test("a sequence advancing from step to step")
    func sequence() throws {
        let tmp = TemporarySpool()
        tmp.value(["init"])
        try expectClean(tmp, ["run", "--owner", "s", "--goal", "g", "--step", "true", "--step", "true"])
        #expect(tmp.json(["flows", "show", "s"])["status"] as? String == "succeeded")
    }

    @Test("prune and repairs")
    func maintenanceAndRepair() throws {
        let tmp = TemporarySpool()
        let t = tmp.addTask(owner: "p", status: "running")
        tmp.value(["tasks", "set", t.task, "--status", "succeeded"])
        try expectClean(tmp, ["maintenance", "--apply", "--retention", "0s"])
        #expect(!FileManager.default.fileExists(atPath: tmp.file("flows/" + t.flow)))
        let u = tmp.addTask(owner: "q", status: "running")
        try FileManager.default.removeItem(atPath: tmp.file("owners/q"))
        try FileManager.default.removeItem(atPath: tmp.file("index/tasks"))
        try expectClean(tmp, ["fsck", "--repair"])
        #expect(tmp.ownerLink("q") == "../flows/\(u.flow)")
    }
}
