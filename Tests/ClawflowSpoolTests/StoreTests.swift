import ClawflowModel
import ClawflowTestSupport
import Dispatch
import Foundation
import Glibc
import Synchronization
import SystemPackage
import Testing

@testable import ClawflowSpool

/// Names in a directory, sorted.
func names(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
}

/// The text of a symlink, or nil.
func link(_ path: String) -> String? { try? FileManager.default.destinationOfSymbolicLink(atPath: path) }

@Suite("The durable write primitive")
struct DurableWriteTests {
    @Test("threads listing one shared directory descriptor each get the whole listing")
    func sharedDescriptorListing() throws {
        let tmp = TemporarySpool()
        let spool = try Spool.open(at: FilePath(tmp.path))
        for i in 0..<3000 { #expect(FileManager.default.createFile(atPath: tmp.file("owners/o-\(i)"), contents: nil)) }
        // 3,000 names take several getdents calls, so unsynchronised listings interleave.
        let short = Mutex<[Int]>([])
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<30 {
                let count = (try? spool.ownersFD?.entries().count) ?? -1
                if count != 3000 { short.withLock { $0.append(count) } }
            }
        }
        #expect(short.withLock { $0 }.isEmpty, "listings that missed entries: \(short.withLock { $0 })")
    }

    @Test("a directory has a visible entry only when a name not beginning with a dot is in it, however many hidden ones")
    func visibleEntry() throws {
        let tmp = TemporarySpool()
        try FileManager.default.createDirectory(atPath: tmp.file("listed"), withIntermediateDirectories: true)
        let dir = try FileDescriptor.open(FilePath(tmp.file("listed")), .readOnly, options: .directory)
        defer { try? dir.close() }
        #expect(try !dir.hasVisibleEntry())
        // More hidden names than one small read holds, so the answer needs several reads.
        for i in 0..<200 { #expect(FileManager.default.createFile(atPath: tmp.file("listed/.hidden-\(i)"), contents: nil)) }
        #expect(try !dir.hasVisibleEntry())
        #expect(FileManager.default.createFile(atPath: tmp.file("listed/k"), contents: nil))
        #expect(try dir.hasVisibleEntry())
        #expect(try dir.hasVisibleEntry(), "asked again: it reads from the start each time")
    }

    @Test("a replace leaves exactly the new file, mode 0600, and no temp behind")
    func replaceLeavesNoTemp() throws {
        let tmp = TemporarySpool()
        let spool = try Spool.open(at: FilePath(tmp.path))
        for round in 0..<3 {
            try DurableFile.replace(in: spool.rootFD, name: "probe.json", bytes: Array("{\"n\": \(round)}\n".utf8), directoryPath: spool.root)
        }
        #expect(try String(contentsOfFile: tmp.file("probe.json"), encoding: .utf8) == "{\"n\": 2}\n")
        #expect(!names(tmp.path).contains { $0.hasPrefix(".") })
        let attrs = try FileManager.default.attributesOfItem(atPath: tmp.file("probe.json"))
        #expect((attrs[.posixPermissions] as? Int) == 0o600)
    }

    @Test("temp names are dot-prefixed, carry the writer's pid and are recognised as debris")
    func tempNames() {
        let name = Layout.tempName(for: "manifest.json", pid: 4242)
        #expect(name.hasPrefix(".manifest.json.4242."))
        #expect(name.hasSuffix(".tmp"))
        #expect(Layout.tempWriterPid(name) == 4242)
        #expect(Layout.tempWriterPid("manifest.json") == nil)
        // The random part: 1-8 lowercase hex digits, no leading zero; many names, few repeats.
        let parts = (0..<200).map { _ in String(Layout.tempName(for: "m", pid: 1).dropFirst(".m.1.".count).dropLast(".tmp".count)) }
        #expect(parts.allSatisfy { p in (1...8).contains(p.count) && p.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) } })
        #expect(parts.allSatisfy { $0 == "0" || !$0.hasPrefix("0") })
        #expect(Set(parts).count > 190)
    }

    @Test("a waiting entry's name reads back as its flow id and whether it runs after others; any other name is refused")
    func waitingEntryNames() {
        let id = Spool.newId()
        for (priority, after) in [(Int64(0), false), (9999, true), (-9999, false)] {
            let name = Layout.waitingEntry(flowId: id, priority: priority, runsAfter: after)
            let read = Layout.waitingJob(fromEntry: name)
            #expect(read?.flowId == id && read?.runsAfter == after, "\(name)")
        }
        let plain = Layout.waitingEntry(flowId: id, priority: 0, runsAfter: false)
        for bad in [
            "1000." + id, "100000." + id, "1000a." + id, "1000\u{0663}." + id, "10000-" + id, plain + ".later", plain + ".after.x",
            "10000." + id.uppercased(), "10000." + id.dropLast(), ".10000." + id, "",
        ] {
            #expect(Layout.waitingJob(fromEntry: String(bad)) == nil, "\(bad)")
        }
    }

    @Test("the careful read refuses a symlink and does not block on a FIFO")
    func carefulRead() throws {
        let tmp = TemporarySpool()
        let spool = try Spool.open(at: FilePath(tmp.path))
        try FileManager.default.createSymbolicLink(atPath: tmp.file("link.json"), withDestinationPath: "/etc/passwd")
        #expect(mkfifo(tmp.file("fifo.json"), 0o600) == 0)
        #expect { try DurableFile.read(in: spool.rootFD, name: "link.json", path: spool.root.appending("link.json")) } throws: { error in
            (error as? SpoolError)?.message.contains("symlink") == true
        }
        #expect { try DurableFile.read(in: spool.rootFD, name: "fifo.json", path: spool.root.appending("fifo.json")) } throws: { error in
            (error as? SpoolError)?.message.contains("FIFO") == true
        }
    }

    @Test("a record over 1 MiB is refused with its size")
    func hugeRecord() throws {
        let tmp = TemporarySpool()
        let spool = try Spool.open(at: FilePath(tmp.path))
        #expect(FileManager.default.createFile(atPath: tmp.file("big.json"), contents: Data(count: Layout.recordLimit + 1)))
        #expect { try DurableFile.read(in: spool.rootFD, name: "big.json", path: spool.root.appending("big.json")) } throws: { error in
            (error as? SpoolError)?.message.contains("1048577 bytes") == true
        }
    }

    @Test("a flush barrier flushes every file and directory in it and closes only what it owns")
    func flushBarrier() throws {
        let tmp = TemporarySpool()
        let spool = try Spool.open(at: FilePath(tmp.path))
        var barrier = FlushSet()
        for n in 0..<12 {
            try DurableFile.create(
                in: spool.staging.fd!, name: "f\(n)", bytes: Array("\(n)".utf8), directoryPath: spool.root.appending("tmp"), barrier: &barrier)
        }
        barrier.add(directory: spool.staging.fd!, spool.root.appending("tmp"))
        barrier.add(directory: spool.staging.fd!, spool.root.appending("tmp"))  // once is enough
        try barrier.flush()
        #expect(barrier.isEmpty)
        #expect(names(tmp.file("tmp")) == (0..<12).map { "f\($0)" }.sorted())
        // The spool's own descriptor is still open; the files' descriptors are closed.
        #expect(fcntl(spool.staging.fd!.rawValue, F_GETFD) >= 0)
        let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").compactMap {
            try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)")
        }
        #expect(!open.contains { $0.hasPrefix(tmp.file("tmp/f")) })
    }

    @Test("a failed flush names the object it could not flush")
    func flushFailure() throws {
        var barrier = FlushSet()
        barrier.add(directory: FileDescriptor(rawValue: 987_654), FilePath("/nowhere/dir"))
        barrier.add(directory: FileDescriptor(rawValue: 987_655), FilePath("/nowhere/other"))
        #expect { try barrier.flush() } throws: { error in
            let e = error as? SpoolError
            return e?.path == FilePath("/nowhere/dir") && e?.errno == .badFileDescriptor
        }
    }

    @Test("ids made by one process within a millisecond sort in the order they were made")
    func monotonicIds() {
        let at = Spool.now()
        let ids = (0..<1000).map { _ in Spool.newId(at: at) }
        #expect(ids == ids.sorted())
        #expect(Set(ids).count == ids.count)
        #expect(ids.allSatisfy(Identifier.isValid))
        #expect(ids.allSatisfy { $0.dropFirst(14).first == "7" })
    }

    @Test("no spool write goes through Foundation's atomic write or FileManager")
    func noFoundationWrites() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Sources/ClawflowSpool")
        // Every source file, in the module's folders too (Store/, DropBox/, Health/, Operations/).
        let files = try FileManager.default.subpathsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".swift") }
        #expect(!files.isEmpty)
        for file in files {
            let text = try String(contentsOfFile: dir.appendingPathComponent(file).path, encoding: .utf8)
            #expect(!text.contains("import Foundation"), "\(file) imports Foundation")
            #expect(!text.contains("FileManager"), "\(file) uses FileManager")
            #expect(!text.contains(".atomic"), "\(file) uses an atomic write option")
        }
    }
}

@Suite("Creating and changing flows")
struct MutationTests {
    @Test("a new flow appears complete with its task, index entries and owner link")
    func creation() throws {
        let tmp = TemporarySpool()
        let spool = try Spool.open(at: FilePath(tmp.path))
        let (snap, taskId) = try spool.addTaskInNewFlow(ownerKey: "team/a b", task: NewTask(runtime: "cron", status: .running), goal: "g", source: "test")
        let id = snap.flow.flowId
        #expect(names(tmp.file("flows/\(id)")) == ["events.jsonl", "manifest.json", "tasks"])
        #expect(names(tmp.file("flows/\(id)/tasks")) == ["\(taskId).json"])
        #expect(link(tmp.file("owners/team%2Fa%20b")) == "../flows/\(id)")
        #expect(link(tmp.file("index/tasks/\(taskId)")) == "../../flows/\(id)")
        #expect(link(tmp.file("index/owners/team%2Fa%20b/\(id)")) == "../../../flows/\(id)")
        #expect(names(tmp.file("tmp")).isEmpty)
        #expect(snap.flow.status == .running)
        #expect(snap.flow.revision == 0)
    }

    @Test("the revision moves only when the manifest changes")
    func revisionMoves() throws {
        let tmp = TemporarySpool()
        let spool = try Spool.open(at: FilePath(tmp.path))
        let (snap, taskId) = try spool.addTaskInNewFlow(ownerKey: "o", task: NewTask(runtime: "cron"), goal: nil, source: "test")
        let id = snap.flow.flowId
        let r1 = try spool.updateTask(flowId: id, taskId: taskId, update: TaskUpdate(status: .running), source: "test")
        #expect(r1.snapshot.flow.revision == 1)
        let r2 = try spool.updateTask(flowId: id, taskId: taskId, update: TaskUpdate(status: .running, fields: ["progressSummary": "half"]), source: "test")
        #expect(r2.snapshot.flow.revision == 1)
        #expect(try spool.readManifest(id).revision == 1)
        let r3 = try spool.updateTask(flowId: id, taskId: taskId, update: TaskUpdate(status: .succeeded), source: "test")
        #expect(r3.snapshot.flow.revision == 2)
        #expect(r3.snapshot.flow.status == .succeeded)
    }

    @Test("a late report on a final task is ignored and logged, not applied")
    func lateReport() throws {
        let tmp = TemporarySpool()
        let spool = try Spool.open(at: FilePath(tmp.path))
        let (snap, taskId) = try spool.addTaskInNewFlow(ownerKey: "o", task: NewTask(runtime: "cron", status: .failed), goal: nil, source: "test")
        let r = try spool.updateTask(flowId: snap.flow.flowId, taskId: taskId, update: TaskUpdate(status: .succeeded), source: "test")
        #expect(r.outcome != .applied)
        #expect(try spool.readTask(flowId: snap.flow.flowId, taskId: taskId).status == .failed)
        let log = try String(contentsOfFile: tmp.file("flows/\(snap.flow.flowId)/events.jsonl"), encoding: .utf8)
        #expect(log.split(separator: "\n").last?.contains(#""event":"ignored""#) == true)
    }

    @Test("a task id can be used only once in the spool")
    func taskIdReuse() throws {
        let tmp = TemporarySpool()
        let spool = try Spool.open(at: FilePath(tmp.path))
        let chosen = "11111111-2222-4333-8444-555555555555"
        _ = try spool.addTaskInNewFlow(ownerKey: "a", task: NewTask(runtime: "cron", taskId: chosen), goal: nil, source: "test")
        #expect { try spool.addTaskInNewFlow(ownerKey: "b", task: NewTask(runtime: "cron", taskId: chosen), goal: nil, source: "test") } throws: { error in
            (error as? SpoolError)?.code == .linkRefused
        }
        #expect(names(tmp.file("flows")).count == 1)
        #expect(names(tmp.file("tmp")).isEmpty)
    }

    @Test("a flow with an unreadable task file refuses changes instead of overwriting it")
    func unreadableTaskBlocksWrites() throws {
        let tmp = TemporarySpool()
        let spool = try Spool.open(at: FilePath(tmp.path))
        let flow = try spool.createManagedFlow(ownerKey: "o", goal: "g", controllerId: "c", running: true, step: nil, stateJson: nil, source: "test")
        let (_, t) = try spool.addTask(toFlow: flow.flow.flowId, ownerKey: nil, task: NewTask(runtime: "cron"), source: "test")
        let path = tmp.file("flows/\(flow.flow.flowId)/tasks/\(t).json")
        try "garbage".write(toFile: path, atomically: false, encoding: .utf8)
        #expect { try spool.cancel(flowId: flow.flow.flowId, grace: 1, source: "test") } throws: { error in
            (error as? SpoolError)?.code == .invalidRecord && (error as? SpoolError)?.message.contains(path) == true
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "garbage")
    }
}

@Suite("Debris of writers that are gone")
struct DebrisTests {
    /// Sets a path's modification time (seconds since the epoch), without following a symlink.
    func setModified(_ path: String, seconds: Int) {
        var times = [timespec(tv_sec: seconds, tv_nsec: 0), timespec(tv_sec: seconds, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW) == 0)
    }

    @Test("a pid counts as the writer only if its process started before the entry last changed")
    func writerIdentity() {
        let me = getpid()
        let now = Int64(time(nil)) * 1000
        #expect(ProcessIdentity.mayHaveWritten(pid: me, modifiedMilliseconds: now))
        // This process started after 2001: it cannot have written an entry changed then.
        #expect(!ProcessIdentity.mayHaveWritten(pid: me, modifiedMilliseconds: 1_000_000_000_000))
        #expect(ProcessIdentity.mayHaveWritten(pid: me, modifiedMilliseconds: nil))
        #expect(!ProcessIdentity.mayHaveWritten(pid: 0, modifiedMilliseconds: now))
        let started = ProcessIdentity.current.startedAtMilliseconds
        #expect(started <= now + 1000 && started > now - 86_400_000 * 365, "started at \(started), now \(now)")
        // A writer killed and not yet reaped is a zombie: it answers kill(pid, 0), wrote nothing more.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var child: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { free(argv[0]) }
        #expect(posix_spawn(&child, "/bin/true", nil, &attr, argv, environ) == 0)
        var siginfo = siginfo_t()
        #expect(waitid(P_PID, id_t(child), &siginfo, WEXITED | WNOWAIT) == 0)  // exited, left unreaped
        #expect(ProcStat(pid: child)?.state == "Z")
        #expect(!ProcessIdentity.mayHaveWritten(pid: child, modifiedMilliseconds: Int64(time(nil)) * 1000 + 5000))
        #expect(!ProcessIdentity.mayHaveWritten(pid: child, modifiedMilliseconds: nil))
        var status: Int32 = 0
        waitpid(child, &status, 0)
    }

    @Test("a stat line is read past a command name holding spaces and parentheses, and a short or garbled one is refused")
    func statLines() throws {
        let fields = (4...52).map { $0 == 5 ? "4242" : $0 == 22 ? "987654" : "0" }.joined(separator: " ")
        let stat = try #require(ProcStat(text: "123 (a) b (c)) S " + fields + "\n"))
        #expect(stat.state == "S" && stat.processGroup == 4242 && stat.startTime == 987_654)
        // Exactly 22 fields, the last one ending the line.
        let short = try #require(ProcStat(text: "7 (x) Z 1 9 " + (6...21).map { _ in "0" }.joined(separator: " ") + " 55"))
        #expect(short.state == "Z" && short.processGroup == 9 && short.startTime == 55)
        #expect(ProcStat(text: "7 (x) Z 1 9 0") == nil)
        #expect(ProcStat(text: "7 (x) S 1 nine " + fields) == nil)
        #expect(ProcStat(text: "no parenthesis at all") == nil)
        let mine = try #require(ProcStat(pid: getpid()))
        #expect(mine.processGroup == getpgrp() && "RS".contains(mine.state) && mine.startTime == ProcessIdentity.current.startTime)
        #expect(ProcStat(pid: -1) == nil)
    }

    @Test("debris named with a pid that a newer process now holds is removed by fsck --repair; a live writer's is kept")
    func reusedPid() throws {
        let tmp = TemporarySpool()
        let spool = try Spool.open(at: FilePath(tmp.path))
        let flow = try spool.addTaskInNewFlow(ownerKey: "debris", task: NewTask(runtime: "cron", status: .running), goal: nil, source: "test").0.flow.flowId
        let me = getpid()
        // The same pid as this test process, but changed long before this process started:
        // that pid's writer died and the kernel handed the number on.
        let oldStaging = tmp.file("tmp/\(Spool.newId()).\(me)")
        let oldTemp = tmp.file("flows/\(flow)/.manifest.json.\(me).ab12.tmp")
        let liveStaging = tmp.file("tmp/\(Spool.newId()).\(me)")
        for dir in [oldStaging, liveStaging] { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false) }
        #expect(FileManager.default.createFile(atPath: oldTemp, contents: Data("{}".utf8)))
        setModified(oldStaging, seconds: 1_000_000_000)
        setModified(oldTemp, seconds: 1_000_000_000)

        let before = try spool.fsck(repair: false)
        let tempNote = try #require(before.notes.first { $0.path == oldTemp })
        #expect(tempNote.message.contains("which is gone"), "\(tempNote.message)")

        let report = try spool.fsck(repair: true)
        #expect(report.findings.isEmpty, "\(report.findings)")
        #expect(!FileManager.default.fileExists(atPath: oldStaging))
        #expect(!FileManager.default.fileExists(atPath: oldTemp))
        #expect(FileManager.default.fileExists(atPath: liveStaging), "the staging directory of a running writer is kept")
        #expect(report.repairs.contains { $0.contains(oldStaging.split(separator: "/").last!) }, "\(report.repairs)")
    }
}
