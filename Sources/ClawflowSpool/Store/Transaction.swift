import ClawflowModel
import Glibc
import SystemPackage

// The write protocol: every change to a spool is one Transaction (spool-layout.md, "Writing").
//
//  1. lock    the flows it changes (flock, increasing id order), then, if it touches
//             what flows share, the spool: shared with the owner keys it concerns
//             (`lockOwners`), or whole (`lockSpool`); never a flow after the spool.
//  2. read    the records under those locks, and decide.
//  3. stage   new versions under temp names, new files, index entries, link intents.
//  4. flush   one barrier for all of it (parallel fsyncs; one syncfs when grouped).
//  5. commit  renames into place, with a flush between renames whose order matters.
//  6. end     the last flush; only then is the change reported; the locks go.
// Dropped before `end`, it deletes what it staged and did not commit, and unlocks: a crash
// or an error at any step leaves the old records or the new, never a mix.

/// One change to the spool, from its locks to its last barrier (the protocol above).
final class Transaction {
    private let spool: Spool?
    private var flowLocks: [(flowId: String, directory: FileDescriptor)] = []
    private var spoolLock: SpoolLock = .none
    private var ownerLocks: [FileDescriptor] = []
    private var uncommitted: [StagedReplacement] = []
    private var held: [FileDescriptor] = []
    /// The open barrier: everything added becomes durable at the next `flush` or `end`.
    var barrier: FlushSet

    /// A transaction on `spool`; a `grouped` one (a batch of many flows) makes each barrier
    /// one syncfs instead of an fsync per object. Without a spool it can take no locks (the
    /// one-file writes of `DurableFile`).
    init(_ spool: Spool?, grouped: Bool = false) {
        self.spool = spool
        barrier = FlushSet(groupedOn: grouped ? spool.map { ($0.rootFD, $0.root) } : nil)
    }

    deinit {
        for staged in uncommitted { staged.discard() }
        barrier.closeOwned()
        release()
    }

    // MARK: 1. Locks

    /// Opens and locks the directory of flow `flowId` (held until the transaction ends) and
    /// returns it. Flows are locked in increasing id order and before the spool.
    func lock(flow flowId: String) throws(SpoolError) -> FileDescriptor {
        guard let spool else { preconditionFailure("a transaction without a spool takes no locks") }
        if let held = flowLocks.first(where: { $0.flowId == flowId }) { return held.directory }
        precondition(spoolLock == .none, "lock order: flows are locked before the spool")
        precondition(flowLocks.last.map { $0.flowId < flowId } ?? true, "lock order: flows in increasing id order")
        let dir = try spool.openFlowDirectory(flowId)
        do { try dir.lock() } catch {
            dir.closeQuietly()
            throw SpoolError.io("Locking the flow", spool.flowPath(flowId), error)
        }
        flowLocks.append((flowId, dir))
        return dir
    }

    /// How a transaction holds the spool's root lock.
    enum SpoolLock { case none, shared, exclusive }

    /// Locks the whole spool (the root directory, exclusively), as the changes that read or
    /// repair what all flows share do (fsck, pruning, the layout's repair); a no-op when held.
    func lockSpool() throws(SpoolError) {
        guard let spool else { preconditionFailure("a transaction without a spool takes no locks") }
        guard spoolLock != .exclusive else { return }
        precondition(spoolLock == .none, "the spool is locked once in a transaction")
        do { try spool.rootFD.lock() } catch { throw SpoolError.io("Locking the spool", spool.root, error) }
        spoolLock = .exclusive
    }

    /// Locks what a change to flows of the owner keys `keys` shares with other flows (their
    /// owner links and index entries, new task ids): the root shared, then each key's
    /// directory `index/owners/<name>/` exclusively, in name order (made when missing, see
    /// `Spool.lockOwnerIndex`), so changes for other owners go on meanwhile. With
    /// `exclusive`, for more than `ownerLockLimit` owners, or when `index/owners` is missing,
    /// the whole spool instead; a no-op when the whole spool is locked already.
    /// `sharedIf`, for one owner, asks under the owner's lock taken shared whether the change
    /// leaves the owner's link and index as they are (they move only under the exclusive
    /// lock, so the answer holds until the transaction ends); when it says no, the lock is
    /// taken again, exclusively.
    func lockOwners(_ keys: [String], exclusive: Bool, sharedIf: (() -> Bool)? = nil) throws(SpoolError) {
        guard let spool else { preconditionFailure("a transaction without a spool takes no locks") }
        if spoolLock == .exclusive { return }  // it covers every owner
        precondition(spoolLock == .none, "owners are locked once in a transaction")
        // Sorted and without repeats (not through a Set: its hashing is looked up at run time).
        var names: [String] = []
        for name in keys.map(OwnerKey.linkName).sorted() where names.last != name { names.append(name) }
        guard !exclusive, names.count <= Transaction.ownerLockLimit, let index = spool.ownerIndexFD else { return try lockSpool() }
        do { try spool.rootFD.lock(exclusive: false) } catch { throw SpoolError.io("Locking the spool", spool.root, error) }
        spoolLock = .shared
        for name in names {
            var (fd, made) = try spool.lockOwnerIndex(name, exclusive: sharedIf == nil || names.count > 1)
            if !made, let sharedIf, names.count == 1, !sharedIf() {
                fd.closeQuietly()
                (fd, made) = try spool.lockOwnerIndex(name)
            }
            ownerLocks.append(fd)
            // A key's first directory: its name in index/owners is durable with the change.
            if made { barrier.add(directory: index, spool.path(.ownerIndex)) }
        }
    }

    /// Most owners' locks one transaction takes (a descriptor each); a batch of new flows for
    /// more owners (the drop box's) locks the whole spool instead.
    static let ownerLockLimit = 16

    /// Whether the whole spool is locked (`lockSpool`).
    var holdsSpoolLock: Bool { spoolLock == .exclusive }

    private func release() {
        for fd in ownerLocks { fd.closeQuietly() }  // closing drops the flock
        ownerLocks = []
        if spoolLock != .none, let spool { try? spool.rootFD.unlock() }
        spoolLock = .none
        for held in flowLocks.reversed() { held.directory.closeQuietly() }  // closing drops the flock
        flowLocks = []
        for fd in held { fd.closeQuietly() }
        held = []
    }

    /// Keeps `fd` (a directory the change writes in) open until the transaction ends, then closes it.
    func hold(_ fd: FileDescriptor) { held.append(fd) }

    // MARK: 3. Staging

    /// Writes the new version of `name` in `directory` under its temp name; it joins the
    /// barrier, and `commit` renames it into place after a flush.
    func stage(_ bytes: [UInt8], as name: String, in directory: FileDescriptor, at directoryPath: FilePath, permissions: mode_t = 0o600) throws(SpoolError)
        -> StagedReplacement
    {
        let staged = try DurableFile.stageReplacement(
            in: directory, name: name, bytes: bytes, directoryPath: directoryPath, barrier: &barrier, permissions: permissions)
        uncommitted.append(staged)
        return staged
    }

    /// Writes a new file (O_EXCL) that no reader sees yet (inside a staging directory); it
    /// joins the barrier.
    func create(_ bytes: [UInt8], as name: String, in directory: FileDescriptor, at directoryPath: @autoclosure @escaping () -> FilePath) throws(SpoolError) {
        try DurableFile.create(in: directory, name: name, bytes: bytes, directoryPath: directoryPath(), barrier: &barrier)
    }

    /// Points the symlink `name` in `directory` at `target` (a temp link renamed over it);
    /// the directory joins the barrier.
    func replaceLink(_ name: String, target: String, in directory: FileDescriptor, at directoryPath: FilePath) throws(SpoolError) {
        let temp = Layout.tempName(for: name, pid: Spool.pid)
        do {
            try directory.symlinkAt(temp, target: target)
            try directory.renameAt(temp, to: directory, name)
        } catch {
            try? directory.removeAt(temp)
            throw SpoolError.io("Replacing the link", directoryPath.appending(name), error)
        }
        barrier.add(directory: directory, directoryPath)
        barrier.addSymlinks()
    }

    // MARK: 4. Barriers

    /// Makes everything added since the last flush durable.
    func flush() throws(SpoolError) { try barrier.flush() }

    // MARK: 5. Commits

    /// Renames a staged version into place (its bytes must be flushed already); its directory
    /// joins the barrier.
    func commit(_ staged: StagedReplacement) throws(SpoolError) {
        uncommitted.removeAll { $0.temp == staged.temp && $0.directory == staged.directory }
        try staged.commit()
        barrier.add(directory: staged.directory, staged.directoryPath)
    }

    /// Deletes what was staged and not committed (a change given up before its renames).
    func discardStaged() {
        for staged in uncommitted { staged.discard() }
        uncommitted = []
    }

    // MARK: 6. End

    /// The last barrier, then the locks go. The change is durable when this returns.
    func end() throws(SpoolError) {
        defer { release() }
        try barrier.flush()
    }
}
