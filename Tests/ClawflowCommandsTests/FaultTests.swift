import ClawflowTestSupport
import Foundation
import Glibc
import Testing

/// A small tmpfs mounted for one test (root only), unmounted at the end.
final class SmallFilesystem {
    let path: String
    let mounted: Bool

    init(options: String) {
        let dir = TemporarySpool("fs")
        path = dir.parent + "/fs"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        mounted = runProgram("/bin/mount", ["-t", "tmpfs", "-o", options, "clawflow-test", path]).status == 0
        keep = dir
    }

    private let keep: TemporarySpool

    /// Runs clawflow with its spool inside this filesystem.
    func run(_ arguments: [String]) -> CommandResult { Clawflow.run(["--spool", path + "/spool"] + arguments) }

    /// Remounts read-only.
    func makeReadOnly() -> Bool { runProgram("/bin/mount", ["-o", "remount,ro", path]).status == 0 }

    deinit { _ = runProgram("/bin/umount", ["-l", path]) }
}

@Suite("Faults end cleanly", .serialized)
struct FaultTests {
    // strace counts injections per thread, and a barrier's fsyncs run on several threads, so
    // "from the Nth fsync on" is not repeatable for N > 1: every fsync fails here.
    @Test(
        "EIO from fsync: the write exits 1 naming what failed and where, reports nothing done, and fsck is clean after repair",
        arguments: ["tasks-set", "tasks-add", "ingest"])
    func fsyncEIO(_ path: String) throws {
        let tmp = TemporarySpool()
        let t = tmp.addTask(owner: "eio", status: "running")
        let command: [String]
        switch path {
        case "tasks-set": command = ["tasks", "set", t.task, "--status", "succeeded"]
        case "tasks-add": command = ["tasks", "add", "--owner", "eio-2", "--runtime", "cron"]
        default:
            #expect(
                FileManager.default.createFile(
                    atPath: tmp.file("incoming/new/d.json"), contents: Data(#"{"kind":"task","ownerKey":"eio-3","runtime":"cron"}"#.utf8)))
            command = ["ingest"]
        }
        let r = runProgram(
            "/usr/bin/strace",
            [
                "-f", "-qq", "-o", "/dev/null", "-e", "trace=fsync", "-e", "inject=fsync:error=EIO:when=1+", "--",
                Clawflow.binary, "--spool", tmp.path,
            ] + command + ["--json"])
        #expect(r.status == 1, "an fsync failed, so the command fails: \(r.status) \(r.stdout) \(r.stderr)")
        let error = jsonObject(r.stdout)?["error"] as? [String: Any]
        #expect(error?["code"] as? String == "io")
        #expect((error?["message"] as? String)?.contains("Input/output error") == true, "\(r.stdout)")
        #expect((error?["path"] as? String)?.hasPrefix(tmp.path) == true, "the message names the path: \(r.stdout)")
        tmp.value(["fsck", "--repair"])
        let check = tmp.run(["fsck", "--json"])
        #expect(check.status == 0 && (jsonObject(check.stdout)?["findings"] as? [Any])?.isEmpty == true, "\(check.stdout)")
        // The write was reported failed; it may or may not have landed, and the spool reads
        // either way and takes the next write.
        let status = tmp.json(["tasks", "show", t.task])["status"] as? String
        #expect(status == "running" || status == "succeeded", "\(status ?? "?")")
        tmp.value(["tasks", "add", "--owner", "after-the-fault", "--runtime", "cron"])
        tmp.value(["ingest"])
    }

    @Test(
        "a full filesystem and one out of inodes: each write that fails exits 1 with the path and ENOSPC; the spool stays consistent",
        arguments: ["size=256k", "nr_inodes=60"])
    func fullFilesystem(_ limit: String) throws {
        try #require(getuid() == 0, "needs root to mount a tmpfs")
        let fs = SmallFilesystem(options: limit + ",mode=0755")
        try #require(fs.mounted, "could not mount a tmpfs")
        var failures = 0
        var created: [String] = []
        for i in 0..<400 where failures < 3 {
            let r = fs.run(["tasks", "add", "--owner", "full-\(i)", "--runtime", "cron", "--label", String(repeating: "x", count: 2000)])
            if r.status == 0 {
                created.append(r.stdout.trimmingCharacters(in: .newlines))
                continue
            }
            failures += 1
            #expect(r.status == 1, "\(r.stderr)")
            #expect(r.stderr.contains("No space left on device"), "\(r.stderr)")
            #expect(r.stderr.contains(fs.path), "the message names where: \(r.stderr)")
        }
        #expect(failures == 3, "the filesystem filled up after \(created.count) tasks")
        #expect(!created.isEmpty)
        // Every task reported created is there and readable.
        for id in created.prefix(20) { #expect(fs.run(["tasks", "show", id]).status == 0) }
        let check = fs.run(["fsck", "--json"])
        #expect((jsonObject(check.stdout)?["findings"] as? [Any])?.isEmpty == true, "\(check.stdout)")
    }

    @Test("a read-only spool: reads work, writes exit 1 naming the read-only filesystem")
    func readOnly() throws {
        try #require(getuid() == 0, "needs root to mount a tmpfs")
        let fs = SmallFilesystem(options: "size=4m,mode=0755")
        try #require(fs.mounted, "could not mount a tmpfs")
        let id = fs.run(["tasks", "add", "--owner", "ro", "--runtime", "cron", "--status", "running"]).stdout.trimmingCharacters(in: .newlines)
        try #require(fs.makeReadOnly())
        #expect(fs.run(["flows", "list"]).status == 0)
        #expect(fs.run(["tasks", "show", id]).status == 0)
        #expect(fs.run(["fsck"]).status == 0)
        let w = fs.run(["tasks", "set", id, "--status", "succeeded"])
        #expect(w.status == 1 && w.stderr.contains("Read-only file system"), "\(w.stderr)")
        let add = fs.run(["tasks", "add", "--owner", "ro-2", "--runtime", "cron"])
        #expect(add.status == 1 && add.stderr.contains("Read-only file system"), "\(add.stderr)")
        #expect(fs.run(["tasks", "show", id, "--json"]).stdout.contains("\"running\""), "nothing was changed")
    }
}
