import ArgumentParser
import ClawflowModel
import ClawflowSpool
import ClawflowWatch
import Dispatch
import Glibc
import Logging
import Synchronization

/// `clawflow watch`: the reactor.
struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Apply drops and re-derive flows the moment files change (inotify), until stopped.",
        discussion: """
            Watches incoming/new and the tasks/ directory of every unfinished flow with inotify \
            (libinotifytools), applies each drop as it arrives, and re-derives a flow whose task \
            files another process changed. On NFS, CIFS, FUSE or CephFS, where inotify does not \
            see other machines' writes, and with --poll, it scans the spool every few seconds \
            instead. One watcher per spool: a second one exits 1 naming the first one's pid. \
            SIGINT or SIGTERM stop it within a second, exit 0. Logs go to stderr.

            Examples:
              clawflow watch
              clawflow watch --once --log-level debug
              clawflow watch --poll 5s
            """
    )

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Scan the spool once, react, and exit.")
    var once = false

    @Option(
        parsing: .unconditional, help: ArgumentHelp("Scan the spool this often instead of using inotify (e.g. 5, 2s, 1m; 1 s to 1d).", valueName: "duration"))
    var poll: String?

    @Option(name: .customLong("log-level"), help: ArgumentHelp("How much to log.", valueName: "level"))
    var logLevel = Word<Logger.Level>(argument: "info")

    @Option(
        name: .customLong("maintenance-interval"), parsing: .unconditional,
        help: ArgumentHelp("Run maintenance --apply this often (e.g. 5m, 1h; 0 turns it off).", valueName: "duration"))
    var maintenanceInterval = "5m"

    /// The longest --poll interval: a day.
    static let longestPoll: Int64 = 86_400

    func validate() throws {
        do { _ = try Parse.duration(maintenanceInterval, option: "--maintenance-interval") } catch { throw ValidationError(error.message) }
        if let poll {
            let seconds: Int64
            do { seconds = try Parse.duration(poll, option: "--poll") } catch { throw ValidationError(error.message) }
            guard seconds >= 1, seconds <= Watch.longestPoll else {
                throw ValidationError("--poll must be from 1 s to 1d (86400 s), e.g. 5, 2s or 1m; \"\(sanitized(poll))\" is \(seconds) s.")
            }
        }
        if Logger.Level(rawValue: logLevel.text) == nil {
            throw ValidationError("Unknown --log-level \"\(logLevel.text)\"; use trace, debug, info, notice, warning, error or critical.")
        }
    }

    /// The root command is synchronous (see `Clawflow`); the watcher runs on Swift's
    /// concurrency pool while the main thread, which is not one of the pool's, waits for it.
    func run() throws {
        // The signal sources below need a thread that takes the signals: this one, waiting.
        StopSignals.unblock()
        let outcome = Outcome()
        let finished = DispatchSemaphore(value: 0)
        Task {
            do { try await watch() } catch { outcome.failure.withLock { $0 = error } }
            finished.signal()
        }
        finished.wait()
        if let error = outcome.failure.withLock({ $0 }) { throw error }
    }

    /// Holds the error the watcher ended with, handed from its task to the main thread.
    final class Outcome: Sendable {
        let failure = Mutex<(any Error)?>(nil)
    }

    func watch() async throws {
        let out = Output(json: global.json)
        let level = Logger.Level(rawValue: logLevel.text) ?? .info
        LoggingSystem.bootstrap { _ in WatchLogHandler(logLevel: level) }
        let logger = Logger(label: "clawflow watch")
        let root = global.spoolPath
        do {
            // Create the spool if needed, and close it again: libinotifytools is initialised
            // before the watcher opens files of its own (its select() needs a descriptor < 1024).
            do { _ = try Spool.open(at: root) }
            let interval = DurationText.seconds(maintenanceInterval) ?? 300
            let watcher = Watcher(root: root, logger: logger, maintenanceInterval: interval > 0 ? Double(interval) : nil)
            var mode: Watcher.Mode
            if let poll {
                mode = .poll(seconds: Double(DurationText.seconds(poll) ?? 2))
            } else {
                let auto = Watcher.automaticMode(for: root)
                mode = auto.mode
                if let fs = auto.filesystem { logger.notice("\(root) is on \(fs), where inotify misses other machines' writes: polling every 2 s") }
            }
            let inotify = mode == .inotify && !once ? try watcher.startInotify() : nil
            let spool = try Spool.open(at: root)
            let pidFile = try Watcher.lockPidFile(root: root)
            defer { pidFile.closeQuietly() }
            let sources = [SIGINT, SIGTERM].map { sig -> DispatchSourceSignal in
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler { watcher.stop() }
                source.resume()
                return source
            }
            if once, mode == .inotify { mode = .poll(seconds: 1) }
            await watcher.run(spool: spool, inotify: inotify, mode: mode, once: once)
            sources.forEach { $0.cancel() }
        } catch let error as SpoolError {
            out.fail(error)
            throw ExitCode(1)
        } catch let error as WatchError {
            out.fail(SpoolError(.io, error.message, path: error.path, errno: error.errno))
            throw ExitCode(1)
        }
    }
}

/// The watcher's log lines on stderr, `<time> <level> clawflow watch: <message>`: one prefix
/// (swift-log's StreamLogHandler writes the logger's label and then the module's name).
struct WatchLogHandler: LogHandler {
    /// The least severe level written.
    var logLevel: Logger.Level
    /// Metadata added to every line (as ` key=value`).
    var metadata: Logger.Metadata = [:]

    /// One metadata item.
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Writes the line in one write(2), so lines from several threads never interleave.
    func log(event: LogEvent) {
        var fields = metadata
        if let more = event.metadata { fields.merge(more) { $1 } }
        if let error = event.error { fields["error"] = "\(error)" }
        let extra = fields.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
        let line = Array("\(WatchLogHandler.timestamp()) \(event.level) clawflow watch: \(event.message)\(extra)\n".utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }

    /// The local time, as swift-log's StreamLogHandler writes it (2026-12-04T22:37:50+0000).
    static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
