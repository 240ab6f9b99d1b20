import ClawflowModel
import ClawflowTestSupport
import Foundation
import Glibc
import SystemPackage
import Testing

@testable import ClawflowSpool

/// Writes on an ext4 made without a journal, where metadata is written back in no order
/// (`MetadataOrdering`; bench/powercut found each of these gaps with real power cuts).
@Suite("Filesystems that do not order metadata")
struct NoJournalTests {
    /// Runs `clawflow --spool spool arguments` under strace and returns its trace lines.
    static func traced(_ spool: String, _ arguments: [String], calls: String = "fsync,syncfs,symlinkat,renameat2,linkat,unlinkat,openat") throws -> [String] {
        let trace = spool + ".trace"
        defer { try? FileManager.default.removeItem(atPath: trace) }
        let r = runProgram("/usr/bin/strace", ["-f", "-qq", "-y", "-e", "trace=" + calls, "-o", trace, "--", Clawflow.binary, "--spool", spool] + arguments)
        #expect(r.status == 0, "\(r.stderr)")
        return try String(contentsOfFile: trace, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    @Test("an ext4 without a journal is told from one with a journal and from tmpfs")
    func detection() throws {
        let bare = try ScratchExt4(journal: false)
        let journaled = try ScratchExt4(journal: true)
        func ordered(_ path: String) throws -> Bool {
            let fd = try FileDescriptor.currentDirectory.openDirectoryAt(path)
            defer { fd.closeQuietly() }
            return MetadataOrdering.isOrdered(fd)
        }
        #expect(try !ordered(bare.path))
        #expect(try ordered(journaled.path))
        #expect(try ordered("/dev/shm"))
    }

    @Test("without a journal, a barrier that made symlinks starts with a syncfs: no fsync reaches a symlink's inode")
    func symlinksReachTheDisk() throws {
        let fs = try ScratchExt4(journal: false)
        let spool = fs.path + "/spool"
        #expect(Clawflow.run(["--spool", spool, "init"]).status == 0)
        // A new flow: its index entries (symlinks) are durable before its rename into flows/,
        // its owner's first link (a symlink) before the command returns.
        var lines = try Self.traced(spool, ["tasks", "add", "--owner", "o", "--runtime", "cron", "--run-id", "r-1"])
        let indexed = try #require(lines.lastIndex { $0.contains("symlinkat(") && $0.contains("/index/runs/") })
        let intoFlows = try #require(lines.firstIndex { $0.contains("renameat2(") && $0.contains("/flows>") })
        let firstSync = try #require(lines.firstIndex { $0.contains("syncfs(") })
        #expect(indexed < firstSync && firstSync < intoFlows, "\(lines)")
        let link = try #require(lines.firstIndex { $0.contains("symlinkat(") && $0.contains("/owners>") && $0.contains("\"o\"") })
        let lastSync = try #require(lines.lastIndex { $0.contains("syncfs(") })
        #expect(link < lastSync, "\(lines)")
        // A drop: its applied record (a symlink) is durable before its flow.
        let name = "d-1.json"
        try #"{"kind":"task","ownerKey":"p","runtime":"cron"}"#.write(toFile: spool + "/incoming/tmp/" + name, atomically: false, encoding: .utf8)
        #expect(rename(spool + "/incoming/tmp/" + name, spool + "/incoming/new/" + name) == 0)
        lines = try Self.traced(spool, ["ingest"])
        let record = try #require(lines.firstIndex { $0.contains("symlinkat(") && $0.contains("incoming/applied>") })
        let dropIntoFlows = try #require(lines.firstIndex { $0.contains("renameat2(") && $0.contains("/flows>") })
        #expect(lines[record..<dropIntoFlows].contains { $0.contains("syncfs(") }, "\(lines)")
    }

    @Test("without a journal, a finished drop is held open until the removal of its names is durable, so its inode cannot be reused before")
    func finishedDropsHeldOpen() throws {
        let fs = try ScratchExt4(journal: false)
        let spool = fs.path + "/spool"
        #expect(Clawflow.run(["--spool", spool, "init"]).status == 0)
        for (i, body) in [#"{"kind":"task","ownerKey":"p","runtime":"cron","runId":"held"}"#, #"{"kind":"task-update","runId":"held","status":"running"}"#]
            .enumerated()
        {
            let name = "d-\(i).json"
            try body.write(toFile: spool + "/incoming/tmp/" + name, atomically: false, encoding: .utf8)
            #expect(rename(spool + "/incoming/tmp/" + name, spool + "/incoming/new/" + name) == 0)
            let lines = try Self.traced(spool, ["ingest"], calls: "openat,close,fsync,unlinkat")
            let removed = try #require(lines.firstIndex { $0.contains("unlinkat(") && $0.contains("incoming/claimed>") && $0.contains(name + "#") })
            let held = try #require(lines[..<removed].lastIndex { $0.contains("openat(") && $0.contains("incoming/claimed>") && $0.contains(name + "#") })
            let released = try #require(
                lines.firstIndex { $0.contains("close(") && $0.contains("/incoming/claimed/" + name + "#") && $0.contains("(deleted)") })
            for dir in ["incoming/new>", "incoming/claimed>", "incoming/tmp>"] {
                let flush = try #require(lines[removed...].firstIndex { $0.contains("fsync(") && $0.contains(dir) }, "\(dir) \(lines)")
                #expect(held < removed && flush < released, "\(dir) \(lines)")
            }
        }
    }

    @Test("without a journal, a command's log is flushed before its task is recorded running, which makes its name durable")
    func logFlushed() throws {
        let fs = try ScratchExt4(journal: false)
        let spool = fs.path + "/spool"
        #expect(Clawflow.run(["--spool", spool, "init"]).status == 0)
        let lines = try Self.traced(spool, ["run", "--owner", "l", "--", "true"], calls: "fsync,renameat")
        let logFlush = try #require(lines.firstIndex { $0.contains("fsync(") && $0.contains(".log>") }, "\(lines)")
        // The flush may run on one of the supervisor's flush threads, started and finished on
        // two lines of that thread.
        let thread = lines[logFlush].split(separator: " ").first.map(String.init) ?? "-"
        let flushed =
            lines[logFlush].contains("<unfinished") ? try #require(lines[logFlush...].firstIndex { $0.hasPrefix(thread + " <... fsync resumed>") }) : logFlush
        // The supervisor's renames of the task file: running, then succeeded (`run` writes the
        // task file only inside the flow it builds in tmp/).
        let taskRenames = lines.indices.filter { lines[$0].contains("renameat(") && lines[$0].contains("/tasks>") }
        #expect(taskRenames.count == 2 && flushed < taskRenames[0], "\(lines)")  // running, then succeeded
    }

    @Test("a task change flushes tasks/ between the task file's rename and the manifest's without a journal, and not with one")
    func taskBeforeManifest() throws {
        for journal in [false, true] {
            let fs = try ScratchExt4(journal: journal)
            let spool = fs.path + "/spool"
            #expect(Clawflow.run(["--spool", spool, "init"]).status == 0)
            let added = Clawflow.run(["--spool", spool, "tasks", "add", "--owner", "o", "--runtime", "cron", "--status", "running"])
            let id = added.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let lines = try Self.traced(spool, ["tasks", "set", id, "--status", "succeeded"], calls: "fsync,renameat")
            let task = try #require(lines.firstIndex { $0.contains("renameat(") && $0.contains("/tasks>") }, "\(lines)")
            let manifest = try #require(lines.firstIndex { $0.contains("renameat(") && $0.contains("\"manifest.json\"") }, "\(lines)")
            let between = lines[task..<manifest].filter { $0.contains("fsync(") }
            // Without a journal only the flush of tasks/ keeps the task file first; with one,
            // the journal commits the two renames in the order they were made.
            #expect(task < manifest && between.count == (journal ? 0 : 1) && between.allSatisfy { $0.contains("/tasks>") }, "journal \(journal): \(lines)")
            #expect(Clawflow.run(["--spool", spool, "fsck"]).status == 0)
        }
    }

    @Test("with a journal, no syncfs is added")
    func journaledCostsNothing() throws {
        let fs = try ScratchExt4(journal: true)
        let spool = fs.path + "/spool"
        #expect(Clawflow.run(["--spool", spool, "init"]).status == 0)
        var lines = try Self.traced(spool, ["tasks", "add", "--owner", "o", "--runtime", "cron", "--run-id", "r-1"])
        #expect(!lines.contains { $0.contains("syncfs(") }, "\(lines)")
        // Nor is a finished drop held open, nor the drop box flushed once more.
        try #"{"kind":"task","ownerKey":"p","runtime":"cron"}"#.write(toFile: spool + "/incoming/new/d.json", atomically: false, encoding: .utf8)
        lines = try Self.traced(spool, ["ingest"], calls: "openat,fsync,syncfs")
        #expect(
            !lines.contains { $0.contains("syncfs(") || ($0.contains("openat(") && $0.contains("incoming/claimed>") && $0.contains("d.json#")) }, "\(lines)")
        #expect(!lines.contains { $0.contains("fsync(") && ($0.contains("incoming/new>") || $0.contains("incoming/tmp>")) }, "\(lines)")
    }
}
