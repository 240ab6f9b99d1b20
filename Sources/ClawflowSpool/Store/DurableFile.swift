import ClawflowModel
import Glibc
import SystemPackage

/// The one durable write primitive and the one careful read (spool-layout.md, "Writing").
enum DurableFile {
    /// Replaces `name` in `directory` so that a reader sees the old or the new bytes, never a
    /// mix, and the new bytes survive a crash once this returns: dot-temp (O_CREAT|O_EXCL|
    /// O_NOFOLLOW|O_CLOEXEC) → write → fsync → rename → fsync(directory).
    static func replace(in directory: FileDescriptor, name: String, bytes: [UInt8], directoryPath: FilePath) throws(SpoolError) {
        let tx = Transaction(nil)
        let staged = try tx.stage(bytes, as: name, in: directory, at: directoryPath)
        try tx.flush()
        try tx.commit(staged)
        try tx.end()
    }

    /// The first half of `replace`: writes the new bytes under the dot-temp name; the temp
    /// file joins `barrier`, after whose flush `commit()` renames it into place.
    /// `permissions` other than 0600 are set with `fchmod`, whatever the umask.
    static func stageReplacement(
        in directory: FileDescriptor, name: String, bytes: [UInt8], directoryPath: FilePath, barrier: inout FlushSet, permissions: mode_t = 0o600
    ) throws(SpoolError) -> StagedReplacement {
        let temp = Layout.tempName(for: name, pid: Spool.pid)
        let fd: FileDescriptor
        do {
            fd = try directory.openAt(temp, .writeOnly, options: [.create, .exclusiveCreate, .noFollow], permissions: 0o600)
            if permissions != 0o600 { try fd.setPermissions(permissions) }
        } catch {
            throw SpoolError.io("Creating a temp file to replace", directoryPath.appending(name), error)
        }
        do { try fd.writeFully(bytes) } catch {
            fd.closeQuietly()
            try? directory.removeAt(temp)
            throw SpoolError.io("Writing", directoryPath.appending(name), error)
        }
        barrier.add(file: fd, directoryPath.appending(name), owned: true)
        return StagedReplacement(directory: directory, temp: temp, name: name, directoryPath: directoryPath)
    }

    /// Writes a new file `name` (O_CREAT|O_EXCL|O_NOFOLLOW) without flushing it: the open
    /// descriptor goes into `barrier`, which makes it durable (and closes it) later.
    static func create(
        in directory: FileDescriptor, name: String, bytes: [UInt8], directoryPath: @autoclosure @escaping () -> FilePath, barrier: inout FlushSet
    ) throws(SpoolError) {
        let fd: FileDescriptor
        do { fd = try directory.openAt(name, .writeOnly, options: [.create, .exclusiveCreate, .noFollow], permissions: 0o600) } catch {
            throw SpoolError.io("Creating", directoryPath().appending(name), error)
        }
        do { try fd.writeFully(bytes) } catch {
            fd.closeQuietly()
            throw SpoolError.io("Writing", directoryPath().appending(name), error)
        }
        barrier.add(file: fd, directoryPath().appending(name), owned: true)
    }

    /// Flushes a directory's entries to the device.
    static func sync(_ directory: FileDescriptor, _ path: FilePath) throws(SpoolError) {
        do { try directory.synchronize() } catch { throw SpoolError.io("Flushing the directory", path, error) }
    }

    /// Replaces the symlink `name` with one whose text is `target` (temp link, rename, fsync).
    static func replaceLink(in directory: FileDescriptor, name: String, target: String, directoryPath: FilePath) throws(SpoolError) {
        let tx = Transaction(nil)
        try tx.replaceLink(name, target: target, in: directory, at: directoryPath)
        try tx.end()
    }

    /// Reads a regular file without following a symlink or blocking on a FIFO, refusing
    /// anything over `limit` bytes. With `knownRegular` (the directory listing said so) the
    /// type check of `fstat` is skipped; `path` is built only for a message. `statIfTooLarge`
    /// names the size in the message about a file over the limit, as the check of `fstat` does.
    static func read(
        in directory: FileDescriptor, name: String, path: @autoclosure () -> FilePath, limit: Int = Layout.recordLimit, knownRegular: Bool = false,
        statIfTooLarge: Bool = false
    ) throws(SpoolError) -> [UInt8] {
        let fd: FileDescriptor
        do { fd = try directory.openAt(name, .readOnly, options: [.noFollow, .nonBlocking]) } catch {
            let path = path()
            if error == .tooManySymbolicLinkLevels {
                throw SpoolError(
                    .invalidRecord,
                    "\(path) is a symlink; clawflow does not follow symlinks in the spool. Remove it, or run clawflow fsck to see what else is out of place.",
                    path: path, errno: error)
            }
            if error == .noSuchFileOrDirectory { throw SpoolError(.notFound, "\(path) does not exist", path: path, errno: error) }
            throw SpoolError.io("Opening", path, error)
        }
        defer { fd.closeQuietly() }
        do {
            var sizeHint = 4095
            if !knownRegular {
                let st = try fd.status()
                guard st.kind == .regular else {
                    let path = path()
                    throw SpoolError(
                        .invalidRecord, "\(path) is a \(st.kind.word), not a regular file; clawflow reads only regular files. Remove it, or run clawflow fsck.",
                        path: path)
                }
                if st.size > limit {
                    let path = path()
                    throw SpoolError(.invalidRecord, "\(path) is \(st.size) bytes, over the \(limit)-byte limit of a record", path: path)
                }
                sizeHint = Int(st.size)
            }
            return try fd.readToEnd(limit: limit, sizeHint: sizeHint, regularFile: true)
        } catch let error as SpoolError {
            throw error
        } catch {
            let e = error as? Errno ?? .ioError
            if e == .fileTooLarge {
                if statIfTooLarge, let st = try? fd.status() {
                    throw SpoolError(.invalidRecord, "\(path()) is \(st.size) bytes, over the \(limit)-byte limit of a record", path: path())
                }
                throw SpoolError(.invalidRecord, "\(path()) is over the \(limit)-byte limit of a record", path: path())
            }
            throw SpoolError.io("Reading", path(), e)
        }
    }

    /// Parses record bytes as a JSON object, naming the file in the error.
    static func parseObject(_ bytes: [UInt8], path: @autoclosure () -> FilePath) throws(SpoolError) -> JSONObject {
        let value: JSON
        do { value = try JSON.parse(bytes: bytes) } catch {
            let path = path()
            throw SpoolError(
                .invalidRecord,
                "\(path) is not valid JSON: \(error.description). Restore it from a backup or remove the flow; clawflow fsck lists every such file.",
                path: path, underlying: error)
        }
        guard let object = value.objectValue else {
            let path = path()
            throw SpoolError(.invalidRecord, "\(path) holds a JSON \(value.kindName), not an object", path: path)
        }
        return object
    }
}

/// A new version of a file written under its temp name, not yet renamed into place.
struct StagedReplacement {
    let directory: FileDescriptor
    let temp: String
    let name: String
    let directoryPath: FilePath

    /// Renames the temp file over the name (its bytes must be flushed already); the
    /// directory still needs its own flush.
    func commit() throws(SpoolError) {
        do {
            try directory.renameAt(temp, to: directory, name)
        } catch {
            discard()
            throw SpoolError.io("Renaming the new version into place at", directoryPath.appending(name), error)
        }
    }

    /// Removes the temp file of a change that is given up.
    func discard() { try? directory.removeAt(temp) }
}

/// One write barrier: every file and directory added becomes durable when `flush` returns.
/// The fsyncs run together on a few threads (writeback of files started first), so a
/// change that touches ten objects waits for about one device flush, not ten in a row
/// (spool-layout.md, "Writing"). A grouped set (a batch of many flows) is flushed by one
/// `syncfs` of the filesystem instead, which writes every dirty inode and then flushes the
/// device once: its descriptors are closed as they are added, so a batch holds none open.
struct FlushSet {
    private var fds: [FileDescriptor] = []
    private var paths: [() -> FilePath] = []  // built only for an error message
    private var isFile: [Bool] = []
    private var owned: [Bool] = []
    // Directories added without ownership, each once. An array, not a Set<Int32>: it holds a
    // few descriptors, and a Set's first use costs a conformance lookup of Int32: Hashable, a
    // scan of every conformance record in the binary (bench/README.md, "Start-up").
    private var shared: [Int32] = []
    private var symlinks = false
    /// The directory whose filesystem a grouped set syncs, and whether anything was added.
    private let group: (fd: FileDescriptor, path: FilePath)?
    private var groupPending = false

    /// An empty set; one `groupedOn` a directory is flushed by a syncfs of its filesystem.
    init(groupedOn group: (FileDescriptor, FilePath)? = nil) { self.group = group }

    /// Whether nothing was added.
    var isEmpty: Bool { fds.isEmpty && !groupPending }

    /// Says that the set's changes include new symlinks (their directories are added as
    /// usual). A symlink cannot be opened, so no `fsync` reaches its inode: on a filesystem
    /// that does not order its metadata (`MetadataOrdering`), `flush` then starts with a
    /// `syncfs`, which writes every inode, and its `fsync` calls flush the device after it.
    mutating func addSymlinks() { symlinks = true }

    /// Adds a file; an `owned` descriptor is closed after the flush.
    mutating func add(file fd: FileDescriptor, _ path: @autoclosure @escaping () -> FilePath, owned: Bool) {
        append(fd, path, file: true, owned: owned)
    }

    /// Adds a directory (once: a descriptor already in the set is not added again).
    mutating func add(directory fd: FileDescriptor, _ path: @autoclosure @escaping () -> FilePath, owned: Bool = false) {
        if !owned {
            if shared.contains(fd.rawValue) { return }
            shared.append(fd.rawValue)
        }
        append(fd, path, file: false, owned: owned)
    }

    private mutating func append(_ fd: FileDescriptor, _ path: @escaping () -> FilePath, file: Bool, owned: Bool) {
        if group != nil {
            groupPending = true
            if owned { fd.closeQuietly() }
            return
        }
        fds.append(fd)
        paths.append(path)
        isFile.append(file)
        self.owned.append(owned)
    }

    /// Makes everything in the set durable, closes the owned descriptors and empties the set.
    /// On failure names the first object that could not be flushed.
    mutating func flush() throws(SpoolError) {
        defer { closeOwned() }
        if let group {
            guard groupPending else { return }
            do { try group.fd.synchronizeFileSystem() } catch { throw SpoolError.io("Flushing the filesystem of", group.path, error) }
            return
        }
        guard !fds.isEmpty else { return }
        if symlinks, !MetadataOrdering.isOrdered(fds[0]) {
            do { try fds[0].synchronizeFileSystem() } catch { throw SpoolError.io("Flushing the filesystem of", paths[0](), error) }
        }
        let failures = FileDescriptor.synchronizeAll(fds, files: isFile)
        if let (index, error) = failures.first {
            throw SpoolError.io(isFile[index] ? "Flushing" : "Flushing the directory", paths[index](), error)
        }
    }

    /// Closes the owned descriptors without flushing (after a failed change) and empties the set.
    mutating func closeOwned() {
        for (fd, own) in zip(fds, owned) where own { fd.closeQuietly() }
        fds = []
        paths = []
        isFile = []
        owned = []
        shared = []
        symlinks = false
        groupPending = false
    }
}
