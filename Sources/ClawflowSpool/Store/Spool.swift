import ClawflowModel
import Glibc
import Synchronization
import SystemPackage

/// A clawflow spool on disk: the directories of spool-layout.md, opened once.
/// Every change is a `Transaction` (Transaction.swift states the protocol): `mutate`,
/// `create`, the drop box, pruning, fsck's repairs and index rebuilds all build on it.
///
/// Only `VERSION` and `flows/` are required. Every derived or auxiliary directory (owner
/// links, indexes, staging) may be missing — a spool written by another program from the
/// layout alone, or one whose `index/` a person deleted — and is then opened once it exists:
/// readers scan instead, and a writer that opens the spool rebuilds it first
/// (spool-layout.md, "Derived state"; `completeLayout`).
public final class Spool: Sendable {
    /// The spool's root directory.
    public let root: FilePath
    let rootFD: FileDescriptor
    let flowsFD: FileDescriptor
    /// `owners/`: the owner links.
    let owners: LayoutDirectory
    /// `index/owners`, `index/tasks`, `index/runs`.
    let ownerIndex: LayoutDirectory, taskIndex: LayoutDirectory, runIndexDirectory: LayoutDirectory
    /// `tmp/`: staging of new flows.
    let staging: LayoutDirectory
    /// `cancel/`: the cancel markers of external tasks.
    let cancelMarkers: LayoutDirectory
    /// `notify/`: deliveries of notifications to hooks.
    let notifyDirectory: LayoutDirectory
    /// The derived directories this process rebuilt from the records (`rebuildLayout`): complete
    /// as built, so `fsck --repair` need not check them entry by entry.
    let rebuiltFromRecords = Mutex<Set<String>>([])

    init(root: FilePath, rootFD: FileDescriptor) throws(SpoolError) {
        self.root = root
        self.rootFD = rootFD
        do { flowsFD = try rootFD.openDirectoryAt(SpoolDirectory.flows.rawValue) } catch {
            rootFD.closeQuietly()
            throw SpoolError.io("Opening the spool directory", SpoolDirectory.flows.path(in: root), error)
        }
        owners = LayoutDirectory(SpoolDirectory.owners.rawValue, in: rootFD)
        ownerIndex = LayoutDirectory(SpoolDirectory.ownerIndex.rawValue, in: rootFD)
        taskIndex = LayoutDirectory(SpoolDirectory.taskIndex.rawValue, in: rootFD)
        runIndexDirectory = LayoutDirectory(SpoolDirectory.runIndex.rawValue, in: rootFD)
        staging = LayoutDirectory(SpoolDirectory.staging.rawValue, in: rootFD)
        cancelMarkers = LayoutDirectory(SpoolDirectory.cancel.rawValue, in: rootFD)
        notifyDirectory = LayoutDirectory(SpoolDirectory.notify.rawValue, in: rootFD)
    }

    deinit {
        for d in [owners, ownerIndex, taskIndex, runIndexDirectory, staging, cancelMarkers, notifyDirectory] { d.close() }
        flowsFD.closeQuietly()
        rootFD.closeQuietly()
    }

    /// `owners/`, or nil while it is missing.
    var ownersFD: FileDescriptor? { owners.fd }
    /// `index/owners`, or nil while it is missing (readers then scan).
    var ownerIndexFD: FileDescriptor? { ownerIndex.fd }
    /// `index/tasks`, or nil while it is missing (readers then scan).
    var taskIndexFD: FileDescriptor? { taskIndex.fd }

    /// The pid of this process, used in temp names (asked each time: a forked supervisor
    /// must not write under its parent's pid).
    static var pid: pid_t { getpid() }

    /// Opens an existing spool, or returns nil when `root` does not exist or is still being
    /// created by another process (read commands then print an empty result without creating it).
    /// `forWriting` first makes the layout whole (`completeLayout`): a writer never works on a
    /// spool with derived directories missing.
    public static func openExisting(at root: FilePath, forWriting: Bool = false) throws(SpoolError) -> Spool? {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.currentDirectory.openAt(root.string, .readOnly, options: .directory)
        } catch {
            if error == .noSuchFileOrDirectory { return nil }
            throw SpoolError.io("Opening the spool", root, error)
        }
        if (try? fd.statusAt(Layout.versionFile)) == nil, isUnfinishedLayout(fd) {
            fd.closeQuietly()
            return nil
        }
        try checkVersion(fd, root)
        if forWriting { return try completeLayout(fd, root) }
        // A spool with no flows/ yet holds no flows: an empty result, and nothing created.
        if (try? fd.statusAt(SpoolDirectory.flows.rawValue)) == nil {
            fd.closeQuietly()
            return nil
        }
        return try Spool(root: root, rootFD: fd)
    }

    /// An empty directory, or one holding only the layout's directories and temp files: a
    /// spool that `initialize` has not finished (its last step writes VERSION).
    private static func isUnfinishedLayout(_ fd: FileDescriptor) -> Bool {
        guard let entries = try? fd.entries() else { return false }
        let top = Set(Layout.directories.filter { !$0.contains("/") })
        return entries.allSatisfy { top.contains($0.name) || Layout.tempWriterPid($0.name) != nil }
    }

    /// Opens the spool at `root`, creating it first when it does not exist.
    public static func open(at root: FilePath) throws(SpoolError) -> Spool {
        if let spool = try openExisting(at: root, forWriting: true) { return spool }
        return try initialize(at: root, sharedGroup: nil).spool
    }

    /// Creates the spool layout at `root` (idempotent for a spool of this version; every step
    /// tolerates another process doing the same at the same time).
    /// With `sharedGroup`, the drop box is writable by that group (spool-layout.md, "Shared drop box").
    public static func initialize(at root: FilePath, sharedGroup: gid_t?) throws(SpoolError) -> (spool: Spool, created: Bool) {
        // Existing spool: check its version and, for a shared group, its modes.
        if let fd = try? FileDescriptor.currentDirectory.openAt(root.string, .readOnly, options: .directory) {
            if (try? fd.statusAt(Layout.versionFile)) != nil {
                try checkVersion(fd, root)
                let spool = try completeLayout(fd, root)
                if let g = sharedGroup { try applySharedGroup(spool.rootFD, root, g) }
                return (spool, false)
            }
            fd.closeQuietly()
        }
        let rootExisted = (try? FileDescriptor.currentDirectory.statusAt(root.string)) != nil
        try makeDirectories(root)
        let fd: FileDescriptor
        do { fd = try FileDescriptor.currentDirectory.openAt(root.string, .readOnly, options: .directory) } catch {
            throw SpoolError.io("Opening the new spool", root, error)
        }
        // A creation that fails (a group the user may not give, say) takes back what it made,
        // so that no half-made spool is left for a later command to take for a private one.
        func undo() {
            try? fd.removeAt(SpoolDirectory.runIndex.rawValue + "/" + Layout.runIndexComplete)
            for name in Layout.directories.reversed() { try? fd.removeAt(name, directory: true) }
            fd.closeQuietly()
            if !rootExisted { try? FileDescriptor.currentDirectory.removeAt(root.string, directory: true) }
        }
        do {
            try fd.setPermissions(0o700)
            for name in Layout.directories {
                try fd.makeDirectoryAt(name, permissions: 0o700, existingIsFine: true)
            }
            if let g = sharedGroup { try applySharedGroup(fd, root, g) }
            // A new spool's run index is complete: it has no tasks yet.
            let runs = try fd.openDirectoryAt(SpoolDirectory.runIndex.rawValue)
            defer { runs.closeQuietly() }
            try DurableFile.replace(in: runs, name: Layout.runIndexComplete, bytes: [], directoryPath: SpoolDirectory.runIndex.path(in: root))
            // VERSION last: its presence says the layout is complete.
            try DurableFile.replace(in: fd, name: Layout.versionFile, bytes: Array(Layout.versionText.utf8), directoryPath: root)
            // The directories made above: their parents' flushes do not write their own inodes
            // and blocks where metadata is not ordered (`MetadataOrdering`).
            if !MetadataOrdering.isOrdered(fd) { try fd.synchronizeFileSystem() }
            try fd.synchronize()
        } catch let error as SpoolError {
            undo()
            throw error
        } catch {
            undo()
            throw SpoolError.io("Creating the spool layout in", root, error as? Errno ?? .ioError)
        }
        return (try Spool(root: root, rootFD: fd), true)
    }

    private static func makeDirectories(_ root: FilePath) throws(SpoolError) {
        var path = FilePath(root.root?.string ?? "")
        for component in root.components {
            path.append(component)
            do { try FileDescriptor.currentDirectory.makeDirectoryAt(path.string, permissions: 0o700, existingIsFine: true) } catch {
                throw SpoolError.io("Creating the spool directory", path, error)
            }
        }
    }

    private static func checkVersion(_ fd: FileDescriptor, _ root: FilePath) throws(SpoolError) {
        let text: [UInt8]
        do {
            let v = try fd.openAt(Layout.versionFile, .readOnly, options: [.noFollow, .nonBlocking])
            defer { v.closeQuietly() }
            text = try v.readToEnd(limit: 4096)
        } catch {
            fd.closeQuietly()
            if error == .noSuchFileOrDirectory {
                throw SpoolError(
                    .io,
                    "\(root) is not a clawflow spool (it has no VERSION file). Choose another directory with --spool or CLAWFLOW_SPOOL, or run clawflow init there.",
                    path: root.appending(Layout.versionFile), errno: error)
            }
            throw SpoolError.io("Reading the spool version", root.appending(Layout.versionFile), error)
        }
        if String(decoding: text, as: UTF8.self) != Layout.versionText {
            fd.closeQuietly()
            let found = String(decoding: text, as: UTF8.self).trimmingWhitespace()
            throw SpoolError(
                .io,
                "\(root) is a spool of another version (\"\(sanitized(found))\"); this clawflow reads \"clawflow-spool 1\". Use a matching clawflow or another --spool.",
                path: root.appending(Layout.versionFile))
        }
    }

    private static func applySharedGroup(_ fd: FileDescriptor, _ root: FilePath, _ group: gid_t) throws(SpoolError) {
        let plan: [(SpoolDirectory?, mode_t)] = [(nil, 0o710), (.incoming, 0o710), (.dropStaging, 0o1730), (.newDrops, 0o1730), (.cancel, 0o2710)]
        for (directory, mode) in plan {
            let path = directory?.path(in: root) ?? root
            do {
                let d = try directory.map { (directory) throws(Errno) in try fd.openDirectoryAt(directory.rawValue) } ?? fd
                defer { if directory != nil { d.closeQuietly() } }
                try d.setGroup(group)
                try d.setPermissions(mode)
            } catch {
                throw SpoolError.io("Giving group \(group) access to", path, error)
            }
        }
    }

    /// The current time.
    public static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(milliseconds: Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000)
    }

    /// A new UUIDv7.
    public static func newId(at now: Timestamp = Spool.now()) -> String {
        let (ms, random) = lastId.withLock { last -> (Int64, [UInt8]) in
            if now.milliseconds <= last.milliseconds, last.random.count == 10 {
                // Within the millisecond of the previous id (or a clock step back): count up
                // from it, so ids this process makes sort in the order it made them.
                var ms = last.milliseconds
                var random = last.random
                var carry = true
                for i in stride(from: 9, through: 3, by: -1) where carry {
                    random[i] &+= 1
                    carry = random[i] == 0
                }
                if carry { ms += 1 }
                last = (ms, random)
                return (ms, random)
            }
            var rng = SystemRandomNumberGenerator()
            let a = rng.next() as UInt64
            let b = rng.next() as UInt64
            let random = (0..<8).map { UInt8(truncatingIfNeeded: a >> (8 * $0)) } + (0..<2).map { UInt8(truncatingIfNeeded: b >> (8 * $0)) }
            last = (now.milliseconds, random)
            return (now.milliseconds, random)
        }
        return Identifier.uuidV7(milliseconds: ms, random: random)
    }

    /// The previous id's time and random bytes (`newId` counts up from them within one millisecond).
    private static let lastId = Mutex<(milliseconds: Int64, random: [UInt8])>((0, []))

    /// The path of a flow's directory.
    public func flowPath(_ flowId: String) -> FilePath { Layout.flowPath(flowId, in: root) }

    /// The path of a flow's `tasks/` directory.
    public func tasksPath(_ flowId: String) -> FilePath { Layout.tasksPath(flowId: flowId, in: root) }

    /// The path of one of the spool's directories.
    public func path(_ directory: SpoolDirectory) -> FilePath { directory.path(in: root) }

    /// The path of a command task's output log.
    public func taskLogPath(flowId: String, taskId: String) -> FilePath {
        tasksPath(flowId).appending(Layout.taskLog(taskId))
    }
}
