import ClawflowModel
import Glibc
import Synchronization
import SystemPackage

/// A directory of the layout that may be missing (spool-layout.md, "Derived state"): opened
/// when first asked for, and kept open once it exists — another writer may build it later.
final class LayoutDirectory: Sendable {
    /// Its path below the spool root.
    let name: String
    private let rootFD: FileDescriptor
    private let opened = Mutex<FileDescriptor?>(nil)

    init(_ name: String, in rootFD: FileDescriptor) {
        self.name = name
        self.rootFD = rootFD
    }

    /// The open directory, or nil while it does not exist (or cannot be opened).
    var fd: FileDescriptor? {
        opened.withLock { fd in
            if fd == nil { fd = try? rootFD.openDirectoryAt(name) }
            return fd
        }
    }

    /// The open directory, created first (with its parents) when it is missing; the parents
    /// that gained it are flushed.
    func openOrCreate(root: FilePath) throws(SpoolError) -> FileDescriptor {
        if let fd { return fd }
        try Spool.makeLayoutDirectory(name, in: rootFD, root: root)
        guard let fd else { throw SpoolError(.io, "Opening \(root.appending(name)) failed after it was created.", path: root.appending(name)) }
        return fd
    }

    func close() { opened.withLock { $0?.closeQuietly() } }
}

/// Derived state is never required: a writer that opens a spool missing some of its
/// directories makes them, and rebuilds what they derive from the records, before it writes.
extension Spool {
    /// The spool at `root` (whose VERSION was checked) with every directory of the layout in
    /// place: missing plain directories are made, missing indexes are built from the records
    /// (each in a temp directory renamed into place, so none is ever seen half built), and a
    /// missing `owners/` is made with a link for every owner. Costs one `fstatat` per layout
    /// directory when nothing is missing.
    static func completeLayout(_ fd: FileDescriptor, _ root: FilePath) throws(SpoolError) -> Spool {
        let missing = Layout.directories.filter { (try? fd.statusAt($0)) == nil }
        if missing.contains(SpoolDirectory.flows.rawValue) { try makeLayoutDirectory(SpoolDirectory.flows.rawValue, in: fd, root: root) }
        let spool = try Spool(root: root, rootFD: fd)
        guard !missing.isEmpty else { return spool }
        let tx = Transaction(spool, grouped: true)
        try tx.lockSpool()
        _ = try spool.rebuildLayout(in: tx)
        try tx.end()
        return spool
    }

    /// Makes what is missing of the layout and rebuilds the derived directories inside `tx`,
    /// a grouped transaction that holds the spool lock; returns what it did, a sentence each.
    /// `records`, when the caller has read every flow under that lock already, saves a read.
    func rebuildLayout(in tx: Transaction, records: SpoolRecords? = nil) throws(SpoolError) -> [String] {
        var done: [String] = []
        let missing = Layout.directories.filter { (try? rootFD.statusAt($0)) == nil }
        let built: Set<String> = ["index/tasks", "index/owners", "index/runs", "owners"]
        for name in missing where !built.contains(name) {
            try Spool.makeLayoutDirectory(name, in: rootFD, root: root)
            done.append("made the missing directory \(name)/")
        }
        // In a shared spool (spool-layout.md, "Shared drop box") the group reaches its cancel markers.
        if missing.contains(Layout.cancelDirectory), let st = try? rootFD.status(), st.permissions & 0o010 != 0, let dir = cancelMarkers.fd {
            do {
                try dir.setGroup(st.group)
                try dir.setPermissions(0o2710)
            } catch {
                throw SpoolError.io("Giving the spool's group access to", root.appending(Layout.cancelDirectory), error)
            }
        }
        let rebuild = Set(missing).intersection(built)
        guard !rebuild.isEmpty else { return done }
        rebuiltFromRecords.withLock { $0.formUnion(rebuild) }
        let read: SpoolRecords
        if let records { read = records } else { read = try readRecordsHoldingSpoolLock() }
        let (flows, tasks) = read.flatten()
        if rebuild.contains(SpoolDirectory.taskIndex.rawValue) {
            try buildIndex(SpoolDirectory.taskIndex.rawValue, in: tx, tasks.map { (nil, $0.taskId, Layout.taskIndexTarget($0.parentFlowId)) })
            done.append("built the task index (\(tasks.count) task(s))")
        }
        if rebuild.contains(SpoolDirectory.ownerIndex.rawValue) {
            try buildIndex(
                SpoolDirectory.ownerIndex.rawValue, in: tx, flows.map { (OwnerKey.linkName($0.ownerKey), $0.flowId, Layout.keyedIndexTarget($0.flowId)) })
            done.append("built the owner index (\(flows.count) flow(s))")
        }
        if rebuild.contains(SpoolDirectory.runIndex.rawValue) {
            let entries = tasks.compactMap { t -> (String?, String, String)? in
                guard let run = t.runId, !run.isEmpty else { return nil }
                return (OwnerKey.linkName(run), t.taskId, Layout.keyedIndexTarget(t.parentFlowId))
            }
            try buildIndex(SpoolDirectory.runIndex.rawValue, in: tx, entries, complete: true)
            done.append("built the run index (\(entries.count) task(s) with a run id)")
        }
        if rebuild.contains(SpoolDirectory.owners.rawValue) {
            try Spool.makeLayoutDirectory(SpoolDirectory.owners.rawValue, in: rootFD, root: root)
            guard let owners = ownersFD else { return done }
            var picks: [String: (id: String, createdAt: Timestamp, isTerminal: Bool)] = [:]
            for f in flows {
                let claim = (f.flowId, f.createdAt, f.isTerminal)
                if let best = picks[f.ownerKey], !Rules.ownerPickPrefers(claim, over: best) { continue }
                picks[f.ownerKey] = claim
            }
            for (key, pick) in picks {
                do { try owners.symlinkAt(OwnerKey.linkName(key), target: Layout.ownerLinkTarget(pick.id), existingIsFine: true) } catch {
                    throw SpoolError.io("Rebuilding the owner link in", path(.owners).appending(OwnerKey.linkName(key)), error)
                }
            }
            tx.barrier.add(directory: owners, self.path(.owners))
            tx.barrier.addSymlinks()
            done.append("rebuilt owners/ (\(picks.count) owner link(s))")
        }
        return done
    }

    /// Every readable flow, read once by the holder of the spool lock (unlocked, as the lock
    /// order requires; spool-layout.md, "Writing"): owner keys, task ids and run ids never
    /// change once written, and no flow or task can be added meanwhile.
    func readRecordsHoldingSpoolLock() throws(SpoolError) -> SpoolRecords {
        var records = SpoolRecords()
        let ids = try flowIds()
        let read = Spool.parallelMap(ids, minimum: 256) { id in try? self.readFlowHoldingRootLock(id) }
        for (id, snap) in zip(ids, read) {
            if let snap { records.snapshots.append(snap) } else { records.unreadable.insert(id) }
        }
        return records
    }

    /// Builds the index directory `name` (`index/tasks`, `index/owners`, `index/runs`) from
    /// `entries` — (subdirectory or nil, entry name, link text) — under a temp name beside it,
    /// flushes it with the barrier of `tx` (grouped: one syncfs), and renames it into place,
    /// the parent joining the barrier; with `complete`, it holds the `.complete` marker of
    /// the run index.
    private func buildIndex(_ name: String, in tx: Transaction, _ entries: [(String?, String, String)], complete: Bool = false) throws(SpoolError) {
        let path = root.appending(name)
        let parentName = String(name.split(separator: "/").first!)
        let leaf = String(name.split(separator: "/").last!)
        let temp = Layout.tempName(for: leaf, pid: Spool.pid)
        let parent: FileDescriptor
        do { parent = try rootFD.openDirectoryAt(parentName) } catch { throw SpoolError.io("Opening", root.appending(parentName), error) }
        tx.hold(parent)
        do throws(Errno) {
            try parent.makeDirectoryAt(temp)
            let dir = try parent.openDirectoryAt(temp)
            defer { dir.closeQuietly() }
            // One subdirectory open at a time (an index of 100,000 owners has as many).
            var current: (name: String, fd: FileDescriptor)?
            defer { current?.fd.closeQuietly() }
            for (sub, entry, target) in entries.sorted(by: { ($0.0 ?? "") < ($1.0 ?? "") }) {
                var into = dir
                if let sub {
                    if let open = current, open.name == sub {
                        into = open.fd
                    } else {
                        current?.fd.closeQuietly()
                        current = nil
                        try dir.makeDirectoryAt(sub, existingIsFine: true)
                        into = try dir.openDirectoryAt(sub)
                        current = (sub, into)
                    }
                }
                _ = try into.symlinkAt(entry, target: target, existingIsFine: true)
            }
            if complete { try dir.openAt(Layout.runIndexComplete, .writeOnly, options: .create, permissions: 0o600).closeQuietly() }
        } catch {
            Spool.removeTree(temp, in: parent)
            throw SpoolError.io("Rebuilding the index", path, error)
        }
        tx.barrier.add(directory: parent, self.root.appending(parentName))
        do { try tx.flush() } catch {
            Spool.removeTree(temp, in: parent)
            throw error
        }
        do throws(Errno) {
            try parent.renameAt(temp, to: parent, leaf, flags: .noReplace)
            tx.barrier.add(directory: parent, self.root.appending(parentName))
        } catch {
            Spool.removeTree(temp, in: parent)
            if error == .fileExists { return }  // built meanwhile by a writer that held no root lock
            throw SpoolError.io("Rebuilding the index", path, error)
        }
    }

    /// Makes `name` (and its missing parents) below the spool root, mode 0700, flushing each
    /// parent that gained an entry.
    static func makeLayoutDirectory(_ name: String, in rootFD: FileDescriptor, root: FilePath) throws(SpoolError) {
        var parent = ""
        for component in name.split(separator: "/") {
            let path = parent.isEmpty ? String(component) : parent + "/" + component
            if (try? rootFD.statusAt(path)) == nil {
                do throws(Errno) {
                    try rootFD.makeDirectoryAt(path, permissions: 0o700, existingIsFine: true)
                    // The parent's flush does not write the new directory's own inode and
                    // block where metadata is not ordered (`MetadataOrdering`).
                    if !MetadataOrdering.isOrdered(rootFD) { try rootFD.synchronizeFileSystem() }
                    if parent.isEmpty {
                        try rootFD.synchronize()
                    } else {
                        let p = try rootFD.openDirectoryAt(parent)
                        defer { p.closeQuietly() }
                        try p.synchronize()
                    }
                } catch {
                    throw SpoolError.io("Creating the spool directory", root.appending(path), error)
                }
            }
            parent = path
        }
    }

    /// Removes `name` in `dir` and everything below it (directories of files and symlinks,
    /// two levels at most, as an index build leaves them).
    static func removeTree(_ name: String, in dir: FileDescriptor) {
        guard let top = try? dir.openDirectoryAt(name) else {
            try? dir.removeAt(name)
            return
        }
        for e in (try? top.entries()) ?? [] {
            if let sub = try? top.openDirectoryAt(e.name) {
                for f in (try? sub.entries()) ?? [] { try? sub.removeAt(f.name) }
                sub.closeQuietly()
                try? top.removeAt(e.name, directory: true)
            } else {
                try? top.removeAt(e.name)
            }
        }
        top.closeQuietly()
        try? dir.removeAt(name, directory: true)
    }
}

/// The records of every flow, as `readRecordsHoldingSpoolLock` found them.
struct SpoolRecords {
    /// The flows read, with their tasks.
    var snapshots: [FlowSnapshot] = []
    /// Flows whose records could not be read.
    var unreadable: Set<String> = []

    /// The flow records and every task record.
    func flatten() -> (flows: [FlowRecord], tasks: [TaskRecord]) {
        (snapshots.map(\.flow), snapshots.flatMap(\.tasks))
    }
}
