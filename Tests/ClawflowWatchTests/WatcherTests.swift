import ClawflowModel
import ClawflowSpool
import ClawflowTestSupport
import Foundation
import Glibc
import Logging
import Synchronization
import SystemPackage
import Testing

@testable import ClawflowWatch

/// A `clawflow watch` process on a temporary spool, its stderr captured in a file.
final class WatcherProcess {
    let spool: TemporarySpool
    let process = Process()
    let logPath: String

    init(_ spool: TemporarySpool, arguments: [String] = [], shellPrefix: String? = nil) throws {
        self.spool = spool
        logPath = spool.parent + "/watch-\(UUID().uuidString).log"
        #expect(FileManager.default.createFile(atPath: logPath, contents: nil))
        let args = ["--spool", spool.path, "watch", "--log-level", "debug"] + arguments
        if let shellPrefix {
            // Lets a test start the watcher with extra open descriptors (bash exec redirections).
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            process.arguments = ["-c", shellPrefix + "; exec \"$0\" \"$@\"", Clawflow.binary] + args
        } else {
            process.executableURL = URL(fileURLWithPath: Clawflow.binary)
            process.arguments = args
        }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: logPath)
        try process.run()
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits until `condition` holds, polling every 10 ms, for at most `seconds`.
    @discardableResult
    static func waitFor(_ seconds: Double = 20, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    func waitUntilWatching() -> Bool {
        WatcherProcess.waitFor { self.log.contains("watching ") }
    }

    /// Sends `signal` and returns the exit status and the seconds it took to exit.
    func stop(_ signal: Int32 = SIGTERM) -> (status: Int32, seconds: Double) {
        let start = Date()
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        return (process.terminationStatus, Date().timeIntervalSince(start))
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Drops a file the way another program would: write under incoming/tmp, rename into incoming/new.
func drop(_ spool: TemporarySpool, _ name: String, _ text: String) {
    let tmp = spool.file("incoming/tmp/" + name)
    #expect(FileManager.default.createFile(atPath: tmp, contents: Data(text.utf8)))
    rename(tmp, spool.file("incoming/new/" + name))
}

func tasks(_ spool: TemporarySpool) -> [TaskRecord] {
    (try? Spool.open(at: FilePath(spool.path)).flows { (try? $0.get().tasks) ?? [] }.flatMap { $0 }) ?? []
}

/// Every test that starts libinotifytools in this process, or a watcher process, runs in this one
/// serialized suite (the library's state is process-global).
@Suite("The watcher", .serialized)
struct WatcherTests {
    static let modes: [[String]] = [[], ["--poll", "1s"]]

    @Test("a drop becomes a one-task flow and an update finishes it, with inotify and in poll mode", arguments: modes)
    func dropAndUpdate(mode: [String]) throws {
        let spool = TemporarySpool()
        spool.value(["init"])
        let watcher = try WatcherProcess(spool, arguments: mode)
        #expect(watcher.waitUntilWatching(), "\(watcher.log)")
        drop(spool, "job.json", #"{"kind":"task","ownerKey":"w","runtime":"cron","runId":"r1","status":"running"}"#)
        #expect(WatcherProcess.waitFor { spool.run(["flows", "show", "w", "--json"]).stdout.contains(#""status": "running""#) })
        drop(spool, "job-done.json", #"{"kind":"task-update","runId":"r1","status":"succeeded"}"#)
        #expect(WatcherProcess.waitFor { spool.run(["flows", "show", "w", "--json"]).stdout.contains(#""status": "succeeded""#) })
        #expect(watcher.stop().status == 0)
    }

    @Test("invalid drops land in rejected/ with reasons while the watcher keeps running", arguments: modes)
    func invalidCorpus(mode: [String]) throws {
        let spool = TemporarySpool()
        spool.value(["init"])
        let watcher = try WatcherProcess(spool, arguments: mode)
        #expect(watcher.waitUntilWatching())
        drop(spool, "bad-json", "{oops")
        drop(spool, "bad-kind", #"{"kind":"nope"}"#)
        drop(spool, "bad-type", #"{"kind":"task","ownerKey":"o","runtime":"cron","label":1}"#)
        symlink("/etc/passwd", spool.file("incoming/new/a-link"))
        mkfifo(spool.file("incoming/new/a-fifo"), 0o600)
        drop(spool, "good", #"{"kind":"task","ownerKey":"fine","runtime":"cron"}"#)
        let reasons = ["bad-json", "bad-kind", "bad-type", "a-link", "a-fifo"].map { spool.file("rejected/\($0).reason") }
        #expect(WatcherProcess.waitFor { reasons.allSatisfy { FileManager.default.fileExists(atPath: $0) } }, "\(watcher.log)")
        #expect(WatcherProcess.waitFor { spool.run(["flows", "show", "fine"]).status == 0 })
        #expect(watcher.process.isRunning)
        #expect(watcher.stop().status == 0)
    }

    @Test("a burst of drops while the watcher runs ends with one task each and an empty incoming/new")
    func burst() throws {
        let spool = TemporarySpool()
        spool.value(["init"])
        let watcher = try WatcherProcess(spool)
        #expect(watcher.waitUntilWatching())
        let count = 1_000
        for i in 0..<count {
            drop(spool, "b\(i)", #"{"kind":"task","ownerKey":"burst-\#(i % 20)","runtime":"cron","runId":"b-\#(i)"}"#)
        }
        #expect(WatcherProcess.waitFor(300) { (try? FileManager.default.contentsOfDirectory(atPath: spool.file("incoming/new")))?.isEmpty == true })
        #expect(watcher.stop().status == 0)
        let all = tasks(spool)
        #expect(all.count == count)
        #expect(Set(all.compactMap(\.runId)).count == count)
        #expect(spool.run(["fsck"]).status == 0)
    }

    @Test("it runs maintenance on its timer: a stray staging directory of a gone writer is swept")
    func maintenanceTimer() throws {
        let spool = TemporarySpool()
        spool.value(["init"])
        let stray = spool.file("tmp/\(Spool.newId()).999999")
        try FileManager.default.createDirectory(atPath: stray, withIntermediateDirectories: false)
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -40 * 3600)], ofItemAtPath: stray)
        let watcher = try WatcherProcess(spool, arguments: ["--maintenance-interval", "1"])
        #expect(watcher.waitUntilWatching())
        #expect(WatcherProcess.waitFor(10) { !FileManager.default.fileExists(atPath: stray) })
        #expect(WatcherProcess.waitFor(5) { watcher.log.contains("maintenance: sweep_temp 1") }, "\(watcher.log)")
        #expect(watcher.stop().status == 0)
    }

    @Test("a second watcher on the same spool exits 1 naming the first one's pid")
    func oneWatcherPerSpool() throws {
        let spool = TemporarySpool()
        spool.value(["init"])
        let first = try WatcherProcess(spool)
        #expect(first.waitUntilWatching())
        let second = spool.run(["watch"])
        #expect(second.status == 1)
        #expect(second.stderr.contains("pid \(first.process.processIdentifier)"))
        #expect(first.stop().status == 0)
    }

    @Test("SIGINT and SIGTERM stop it within a second with exit 0", arguments: [SIGINT, SIGTERM])
    func signals(sig: Int32) throws {
        let spool = TemporarySpool()
        spool.value(["init"])
        let watcher = try WatcherProcess(spool)
        #expect(watcher.waitUntilWatching())
        let (status, seconds) = watcher.stop(sig)
        #expect(status == 0)
        #expect(seconds < 1.0)
        #expect(watcher.log.contains("watcher stopped"))
    }

    @Test("--once applies what is waiting and exits")
    func once() throws {
        let spool = TemporarySpool()
        spool.value(["init"])
        drop(spool, "x", #"{"kind":"task","ownerKey":"once","runtime":"cron"}"#)
        let r = spool.run(["watch", "--once"])
        #expect(r.status == 0)
        #expect(spool.run(["flows", "show", "once"]).status == 0)
    }

    @Test("its log lines carry one prefix: <time> <level> clawflow watch: <message>")
    func logPrefix() throws {
        let spool = TemporarySpool()
        spool.value(["init"])
        drop(spool, "x", #"{"kind":"task","ownerKey":"logged","runtime":"cron"}"#)
        let r = spool.run(["watch", "--once", "--log-level", "debug"])
        #expect(r.status == 0)
        let lines = r.stderr.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasSuffix("clawflow watch: ingest: applied 1, rejected 0, repeats 0, waiting 0") }, "\(r.stderr)")
        let pattern = #/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} (trace|debug|info|notice|warning|error|critical) clawflow watch: [^\[]/#
        for line in lines {
            #expect(line.firstMatch(of: pattern) != nil, "\(line)")
            #expect(!line.contains("[ClawflowWatch]") && !line.contains("clawflow.watch"), "\(line)")
        }
    }

    @Test("its inotify descriptor stays below 1024 when it starts with 1,100 files open, and is close-on-exec")
    func descriptorGuards() throws {
        let spool = TemporarySpool()
        spool.value(["init"])
        // bash fills every free descriptor from 3 to 1102 (leaving those it inherited, such as
        // Foundation's child-exit socket, alone) and execs the watcher with them all open.
        let watcher = try WatcherProcess(spool, shellPrefix: "for i in $(seq 3 1102); do [ -e /proc/self/fd/$i ] || eval \"exec $i</dev/null\"; done")
        #expect(watcher.waitUntilWatching(), "\(watcher.log)")
        let pid = watcher.process.processIdentifier
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        #expect(fds.count > 1_100)
        let inotify = fds.compactMap(Int32.init).filter { fd in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)")) == "anon_inode:inotify"
        }
        #expect(inotify.count == 1)
        #expect(inotify.allSatisfy { $0 < 1024 })
        if let fd = inotify.first {
            let info = (try? String(contentsOfFile: "/proc/\(pid)/fdinfo/\(fd)", encoding: .utf8)) ?? ""
            let flags =
                info.split(separator: "\n").first { $0.hasPrefix("flags:") }.flatMap { Int($0.dropFirst(6).trimmingCharacters(in: .whitespaces), radix: 8) }
                ?? 0
            #expect(flags & Int(O_CLOEXEC) != 0, "flags \(String(flags, radix: 8))")
        }
        // It still works.
        drop(spool, "late", #"{"kind":"task","ownerKey":"fd","runtime":"cron"}"#)
        #expect(WatcherProcess.waitFor { spool.run(["flows", "show", "fd"]).status == 0 })
        #expect(watcher.stop().status == 0)
    }

    @Test("an inotify queue overflow triggers a full rescan that applies every drop")
    func overflow() throws {
        let spool = TemporarySpool()
        spool.value(["init"])
        let setting = "/proc/sys/fs/inotify/max_queued_events"
        let saved = try String(contentsOfFile: setting, encoding: .utf8)
        // A tiny queue for the watcher's inotify instance only (the limit is read at init).
        try "32\n".write(toFile: setting, atomically: false, encoding: .utf8)
        let watcher: WatcherProcess
        do {
            defer { try? saved.write(toFile: setting, atomically: false, encoding: .utf8) }
            watcher = try WatcherProcess(spool)
            #expect(watcher.waitUntilWatching())
        }
        kill(watcher.process.processIdentifier, SIGSTOP)
        for i in 0..<200 { drop(spool, "o\(i)", #"{"kind":"task","ownerKey":"of","runtime":"cron","runId":"o-\#(i)"}"#) }
        kill(watcher.process.processIdentifier, SIGCONT)
        #expect(WatcherProcess.waitFor(120) { tasks(spool).count == 200 })
        // The events queued before the overflow may already have applied every drop (one
        // ingest pass takes the whole directory); the overflow is handled right after them.
        #expect(WatcherProcess.waitFor(20) { watcher.log.contains("overflowed") }, "\(watcher.log)")
        #expect(watcher.stop().status == 0)
    }

    @Test("in process: the library runs on its own thread, refuses a second instance, and a spawned child inherits no inotify descriptor")
    func inProcessThread() async throws {
        let spool = TemporarySpool()
        spool.value(["init"])
        let thread = InotifyThread(wakeDirectory: spool.file("run"))
        try thread.start()
        defer { thread.stop() }
        #expect(thread.descriptor >= 0 && thread.descriptor < 1024)
        #expect(fcntl(thread.descriptor, F_GETFD) & FD_CLOEXEC != 0)
        #expect(throws: WatchError.self) { try InotifyThread(wakeDirectory: spool.file("run")).start() }
        thread.watch(spool.file("incoming/new"), mask: [.movedTo])
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sh")
        child.arguments = ["-c", "for f in /proc/self/fd/*; do readlink $f; done"]
        let pipe = Pipe()
        child.standardOutput = pipe
        try child.run()
        let listing = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        child.waitUntilExit()
        #expect(!listing.contains("inotify"), "\(listing)")
        drop(spool, "seen", "{}")
        // Awaited, not waited for on a semaphore: a blocked thread of the (2-thread) pool
        // would starve the consumer while other suites run.
        let consumer = Task {
            for await event in thread.events where event.name == "seen" { return true }
            return false
        }
        let timeout = Task {
            try? await Task.sleep(for: .seconds(10))
            consumer.cancel()
        }
        let seen = await consumer.value
        timeout.cancel()
        #expect(seen)
    }
}
