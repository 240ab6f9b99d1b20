import CSystemShims
import ClawflowModel
import ClawflowRunner
import ClawflowSpool
import Dispatch
import Glibc
import Logging
import Synchronization
import SystemPackage

/// The reactor (README.md, "The watcher"): applies drops as they arrive and re-derives
/// flows whose task files change, idempotently, through the one mutation path. Correctness
/// never depends on it; it makes reactions to other programs immediate.
public final class Watcher: Sendable {
    /// How the watcher learns about changes.
    public enum Mode: Sendable, Equatable {
        /// inotify through libinotifytools.
        case inotify
        /// A full scan every so many seconds (network filesystems, or `--poll`).
        case poll(seconds: Double)
    }

    /// The spool root.
    public let root: FilePath
    private let logger: Logger
    private let stopRequested = Atomic<Bool>(false)
    private let work = DispatchQueue(label: "clawflow.watch.work")
    /// Where the watcher delivers notifications to hooks, apart from its other work, so that a
    /// slow hook never holds up a reaction.
    private let notifyWork = DispatchQueue(label: "clawflow.watch.notify")
    private let deliveryScheduled = Atomic<Bool>(false)
    private let thread = Mutex<InotifyThread?>(nil)
    /// Flows the watcher's own ingest created (id → created finished), until inotify reports
    /// them arriving in flows/: those need a watch, or none, but no second read.
    private let ownCreations = Mutex<[String: Bool]>([:])

    /// Seconds between maintenance passes (`maintenance --apply`), or nil for none.
    public let maintenanceInterval: Double?

    /// A watcher for the spool at `root`, running maintenance every `maintenanceInterval` seconds.
    public init(root: FilePath, logger: Logger, maintenanceInterval: Double? = 300) {
        self.root = root
        self.logger = logger
        self.maintenanceInterval = maintenanceInterval
    }

    /// The mode to use on this spool: polling when the filesystem is one where inotify does
    /// not see other machines' writes (NFS, CIFS/SMB, FUSE, CephFS), else inotify.
    public static func automaticMode(for root: FilePath, pollSeconds: Double = 2) -> (mode: Mode, filesystem: String?) {
        let magic = clawflow_filesystem_magic(root.string)
        let remote: [Int: String] = [0x6969: "NFS", 0x517B: "SMB", 0xFF53_4D42: "CIFS", 0xFE53_4D42: "SMB2", 0x6573_5546: "FUSE", 0x00C3_6400: "CephFS"]
        if let name = remote[Int(UInt32(truncatingIfNeeded: magic))] { return (.poll(seconds: pollSeconds), name) }
        return (.inotify, nil)
    }

    /// Holds `run/watch.pid` with an exclusive flock for the process's life (one watcher per
    /// spool) and writes the pid into it. Returns the open descriptor.
    public static func lockPidFile(root: FilePath) throws(WatchError) -> FileDescriptor {
        let path = SpoolDirectory.run.path(in: root).appending(Layout.watchPidFile)
        let fd = Glibc.open(path.string, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            let e = Errno(rawValue: errno)
            throw WatchError(.io, "Could not open \(path): \(e). Check the spool's permissions.", path: path, errno: e)
        }
        if clawflow_flock(fd, LOCK_EX | LOCK_NB) != 0 {
            var buf = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buf, 31, 0)
            close(fd)
            let holder = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self).trimmingWhitespace() : "unknown"
            throw WatchError(.alreadyRunning, "Another watcher (pid \(holder)) is already running on \(root); it holds \(path).", path: path)
        }
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return FileDescriptor(rawValue: fd)
    }

    /// Asks a running watcher to stop (from a signal handler's queue); `run` returns soon after.
    public func stop() {
        stopRequested.store(true, ordering: .releasing)
        thread.withLock { $0 }?.stop()
    }

    /// Starts libinotifytools on its thread, watching `<root>/run` to be woken. Call before
    /// the process opens files of its own (see `FileDescriptorGuard`).
    public func startInotify() throws(WatchError) -> InotifyThread {
        let inotify = InotifyThread(
            wakeDirectory: SpoolDirectory.run.path(in: root).string,
            autoWatch: (parent: SpoolDirectory.flows.path(in: root).string, child: Layout.tasks, mask: Watcher.tasksMask)
        )
        try inotify.start()
        thread.withLock { $0 = inotify }
        return inotify
    }

    static let tasksMask: EventMask = [.movedTo, .closeWrite, .onlyDirectory, .dontFollow]
    static let dropMask: EventMask = [.movedTo, .closeWrite, .onlyDirectory, .dontFollow]
    static let flowsMask: EventMask = [.movedTo, .create, .onlyDirectory, .dontFollow]
    static let notifyMask: EventMask = [.movedTo, .onlyDirectory, .dontFollow]

    // MARK: - Running

    /// Watches `spool` until `stop()` (or, with `once`, after one full scan): watches are
    /// added before the initial full scan; an overflow triggers a full rescan.
    public func run(spool: Spool, inotify: InotifyThread?, mode: Mode, once: Bool) async {
        if let inotify, mode == .inotify {
            await blocking {
                inotify.watch(SpoolDirectory.newDrops.path(in: self.root).string, mask: Watcher.dropMask)
                inotify.watch(SpoolDirectory.flows.path(in: self.root).string, mask: Watcher.flowsMask)
                inotify.watch(SpoolDirectory.notify.path(in: self.root).string, mask: Watcher.notifyMask)
            }
        }
        await blocking { self.fullScan(spool, inotify: mode == .inotify ? inotify : nil) }
        if once || stopRequested.load(ordering: .acquiring) {
            inotify?.stop()
            return
        }
        if let interval = maintenanceInterval { scheduleMaintenance(spool, every: interval) }
        switch mode {
        case .poll(let seconds):
            logger.info("watching \(root) by polling every \(seconds) s")
            while !stopRequested.load(ordering: .acquiring) {
                await blocking { self.sleepUnlessStopped(seconds) }
                if stopRequested.load(ordering: .acquiring) { break }
                await blocking { self.fullScan(spool, inotify: nil) }
            }
            inotify?.stop()
        case .inotify:
            guard let inotify else { return }
            logger.info("watching \(root) with inotify")
            for await event in inotify.events {
                if stopRequested.load(ordering: .acquiring) { break }
                // A delivery goes to its own queue at once, not behind a reaction that waits
                // for the lock of the write that recorded it.
                if Layout.watchedPlace(event.directory, in: root) == .notify, !event.name.hasPrefix(".") {
                    scheduleDelivery(spool)
                    continue
                }
                await blocking { self.react(to: event, spool: spool, inotify: inotify) }
            }
        }
        logger.info("watcher stopped")
    }

    /// Runs blocking spool work on the watcher's own serial queue, off the concurrency pool.
    private func blocking(_ body: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            work.async {
                body()
                done.resume()
            }
        }
    }

    private func sleepUnlessStopped(_ seconds: Double) {
        var left = seconds
        while left > 0, !stopRequested.load(ordering: .acquiring) {
            let step = min(left, 0.1)
            usleep(UInt32(step * 1_000_000))
            left -= step
        }
    }

    // MARK: - Reactions

    private func react(to event: WatchEvent, spool: Spool, inotify: InotifyThread) {
        if event.mask.contains(.queueOverflow) {
            logger.warning("inotify queue overflowed; rescanning the whole spool")
            fullScan(spool, inotify: inotify)
            return
        }
        if event.name.hasPrefix(".") { return }
        switch Layout.watchedPlace(event.directory, in: root) {
        case .newDrops:
            ingest(spool)
        case .flows:
            if let finished = ownCreations.withLock({ $0.removeValue(forKey: event.name) }) {
                // Written and derived by this watcher a moment ago; the inotify thread has
                // already watched its tasks/ (a later change there is an event of its own).
                if finished { inotify.unwatch(spool.tasksPath(event.name).string) }
                return
            }
            reconcile(event.name, spool: spool, inotify: inotify)
        case .tasks(let flowId) where Layout.isTaskFile(event.name):
            reconcile(flowId, spool: spool, inotify: inotify)
        case .notify:
            scheduleDelivery(spool)
        case .tasks, nil:
            break
        }
    }

    /// Delivers the notifications that are due (README.md, "Notification hooks") on the
    /// watcher's delivery queue; requests made while one is waiting to run join it. Retries
    /// are scheduled for when they are due.
    private func scheduleDelivery(_ spool: Spool, after seconds: Double? = nil) {
        let body: @Sendable () -> Void = { [self] in
            if seconds == nil { deliveryScheduled.store(false, ordering: .releasing) }
            if stopRequested.load(ordering: .acquiring) { return }
            if case .idle(let next?) = Deliverer(spool: spool, source: "watcher").drainOnce() { scheduleDelivery(spool, after: next) }
        }
        if let seconds {
            notifyWork.asyncAfter(deadline: .now() + max(seconds, 0.01), execute: body)
        } else if !deliveryScheduled.exchange(true, ordering: .acquiringAndReleasing) {
            notifyWork.async(execute: body)
        }
    }

    private func ingest(_ spool: Spool) {
        do {
            let report = try spool.ingest()
            if thread.withLock({ $0 != nil }), !report.createdFlows.isEmpty {
                ownCreations.withLock { $0.merge(report.createdFlows) { _, new in new } }
            }
            if report.applied + report.rejected + report.repeats > 0 {
                logger.info("ingest: applied \(report.applied), rejected \(report.rejected), repeats \(report.repeats), waiting \(report.waiting)")
            }
            if report.waiting > 0 { scheduleRetry(spool) }
        } catch {
            logger.error("ingest failed: \(error.message)")
        }
    }

    /// Runs `maintenance --apply` on the work queue every `interval` seconds until stopped,
    /// so a long-running install stays healthy without cron.
    private func scheduleMaintenance(_ spool: Spool, every interval: Double) {
        work.asyncAfter(deadline: .now() + interval) { [self] in
            if stopRequested.load(ordering: .acquiring) { return }
            do throws(SpoolError) {
                let done = try spool.maintain(policy: MaintenancePolicy(), apply: true).filter(\.done)
                if !done.isEmpty {
                    var counts: [String: Int] = [:]
                    for item in done { counts[item.action, default: 0] += 1 }
                    logger.info("maintenance: \(counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
                }
            } catch {
                logger.error("maintenance failed: \(error.message)")
            }
            scheduleMaintenance(spool, every: interval)
        }
    }

    /// Updates that wait for their task are looked at again after a while even if no new
    /// drop arrives (they are refused after a minute).
    private func scheduleRetry(_ spool: Spool) {
        work.asyncAfter(deadline: .now() + 5) { [self] in
            if !stopRequested.load(ordering: .acquiring) { ingest(spool) }
        }
    }

    /// Re-derives one flow (writes only if something is due) and drops its watch once it ends.
    private func reconcile(_ flowId: String, spool: Spool, inotify: InotifyThread?) {
        guard Identifier.isValid(flowId) else { return }
        do {
            // Re-derives the flow, then records lost command tasks whose supervisor died.
            let snap = try spool.rederive(flowId, source: "watcher")
            if snap.flow.isTerminal {
                inotify?.unwatch(spool.tasksPath(flowId).string)
            }
        } catch {
            if error.code != .notFound { logger.warning("flow \(flowId): \(error.message)") }
        }
    }

    /// Applies every waiting drop and re-derives every unfinished flow, watching its tasks.
    private func fullScan(_ spool: Spool, inotify: InotifyThread?) {
        ownCreations.withLock { $0.removeAll() }  // every flow is read below; lost events leave none behind
        ingest(spool)
        let ids: [String]
        do { ids = try spool.flowIds() } catch {
            logger.error("listing flows failed: \(error.message)")
            return
        }
        var watched = 0
        for id in ids {
            guard let flow = try? spool.readManifest(id), !flow.isTerminal else { continue }
            if let inotify {
                inotify.watch(spool.tasksPath(id).string, mask: Watcher.tasksMask)
                watched += 1
            }
            reconcile(id, spool: spool, inotify: inotify)
        }
        logger.debug("full scan: \(ids.count) flows, \(watched) watched")
        scheduleDelivery(spool)
    }
}
