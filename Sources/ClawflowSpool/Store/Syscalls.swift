import CSystemShims
import Glibc
import SystemPackage

/// The one EINTR loop (swift-system's `valueOrErrno(retryOnInterrupt:)`): runs a syscall
/// that returns -1 and sets `errno` on failure, again while it was interrupted by a signal
/// (unless `retryOnInterrupt` is false); its result, or its `errno`.
@inline(__always)
public func valueOrErrno<T: BinaryInteger>(retryOnInterrupt: Bool = true, _ body: () -> T) -> Result<T, Errno> {
    while true {
        let r = body()
        if r != -1 { return .success(r) }
        let e = Errno(rawValue: errno)
        if !retryOnInterrupt || e != .interrupted { return .failure(e) }
    }
}

/// Runs a syscall, retrying on EINTR, and throws its `errno` as `Errno` when it returns -1.
@inline(__always)
func retrying<T: BinaryInteger>(_ body: () -> T) throws(Errno) -> T {
    try valueOrErrno(body).get()
}

/// How `renameAt` renames (swift-nio's `RenameAtFlags`; the flags of `renameat2`).
public struct RenameFlags: OptionSet, Sendable {
    /// The raw `renameat2` flags.
    public let rawValue: UInt32
    /// Flags from raw `renameat2` flags.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Fail with EEXIST instead of replacing an existing target (`RENAME_NOREPLACE`).
    public static let noReplace = RenameFlags(rawValue: clawflow_rename_noreplace())
}

/// File types as reported by `stat` and `readdir`.
public enum FileKind: Sendable, Equatable {
    case regular, directory, symlink, fifo, socket, device, unknown

    init(mode: mode_t) {
        switch mode & S_IFMT {
        case S_IFREG: self = .regular
        case S_IFDIR: self = .directory
        case S_IFLNK: self = .symlink
        case S_IFIFO: self = .fifo
        case S_IFSOCK: self = .socket
        case S_IFCHR, S_IFBLK: self = .device
        default: self = .unknown
        }
    }

    init(direntType: UInt8) {
        switch Int32(direntType) {
        case Int32(DT_REG): self = .regular
        case Int32(DT_DIR): self = .directory
        case Int32(DT_LNK): self = .symlink
        case Int32(DT_FIFO): self = .fifo
        case Int32(DT_SOCK): self = .socket
        case Int32(DT_CHR), Int32(DT_BLK): self = .device
        default: self = .unknown
        }
    }

    /// A word for messages: "regular file", "symlink", "FIFO", ...
    public var word: String {
        switch self {
        case .regular: "regular file"
        case .directory: "directory"
        case .symlink: "symlink"
        case .fifo: "FIFO"
        case .socket: "socket"
        case .device: "device"
        case .unknown: "unknown file type"
        }
    }
}

/// What `fstatat` says about a file.
public struct FileStatus: Sendable {
    /// The type of file.
    public var kind: FileKind
    /// Size in bytes.
    public var size: Int64
    /// Hard link count.
    public var linkCount: UInt64
    /// Modification time in milliseconds since the epoch.
    public var modifiedMilliseconds: Int64
    /// Status change time (ctime) in milliseconds since the epoch: set by the kernel when the
    /// file was created, renamed or linked, and by no program's choice.
    public var changedMilliseconds: Int64
    /// Permission bits.
    public var permissions: mode_t
    /// Owning user.
    public var owner: uid_t
    /// Owning group.
    public var group: gid_t
    /// The inode number (with `device`, which file this is).
    public var inode: UInt64
    /// The device the file is on.
    public var device: UInt64

    init(_ st: stat) {
        kind = FileKind(mode: st.st_mode)
        size = Int64(st.st_size)
        linkCount = UInt64(st.st_nlink)
        modifiedMilliseconds = Int64(st.st_mtim.tv_sec) * 1000 + Int64(st.st_mtim.tv_nsec) / 1_000_000
        changedMilliseconds = Int64(st.st_ctim.tv_sec) * 1000 + Int64(st.st_ctim.tv_nsec) / 1_000_000
        permissions = st.st_mode & 0o7777
        owner = st.st_uid
        group = st.st_gid
        inode = UInt64(st.st_ino)
        device = UInt64(st.st_dev)
    }
}

/// One entry of a directory listing.
public struct DirectoryEntry: Sendable {
    /// The entry's name.
    public var name: String
    /// Its type as `readdir` reports it (`.unknown` on filesystems that do not say).
    public var kind: FileKind
}

extension FileDescriptor {
    /// The current working directory, for the `*at` calls. The corresponding C constant is `AT_FDCWD`.
    public static let currentDirectory = FileDescriptor(rawValue: AT_FDCWD)

    /// Opens `name` relative to this directory, always close-on-exec. The corresponding C
    /// function is `openat`.
    public func openAt(_ name: String, _ mode: AccessMode, options: OpenOptions = [], permissions: mode_t = 0o600) throws(Errno) -> FileDescriptor {
        let flags = mode.rawValue | options.rawValue | O_CLOEXEC
        let fd = try retrying { Glibc.openat(rawValue, name, flags, permissions) }
        return FileDescriptor(rawValue: fd)
    }

    /// Opens the directory `name` below this one without following a symlink.
    public func openDirectoryAt(_ name: String) throws(Errno) -> FileDescriptor {
        try openAt(name, .readOnly, options: [.directory, .noFollow])
    }

    /// Reads the whole file, refusing more than `limit` bytes; `sizeHint` (the size `fstat`
    /// reported) lets a file be read with one buffer, and `regularFile` (a short read is the
    /// end of a regular file) with one call. The corresponding C function is `read`.
    public func readToEnd(limit: Int, sizeHint: Int = 4095, regularFile: Bool = false) throws(Errno) -> [UInt8] {
        var capacity = min(max(sizeHint, 0), limit) + 1
        var out: [UInt8] = []
        while true {
            if out.count > limit { throw Errno.fileTooLarge }
            // Each read goes into uninitialised space (zeroing it cost more than reading a
            // record); the first one, which usually gets the whole file, is returned as is.
            var failure: Errno?
            let requested = capacity - out.count
            let chunk = [UInt8](unsafeUninitializedCapacity: requested) { buffer, initialized in
                switch valueOrErrno({ Glibc.read(rawValue, buffer.baseAddress!, requested) }) {
                case .success(let n): initialized = n
                case .failure(let e):
                    failure = e
                    initialized = 0
                }
            }
            if let failure { throw failure }
            if chunk.isEmpty { break }
            if out.isEmpty { out = chunk } else { out += chunk }
            if out.count > limit { throw Errno.fileTooLarge }
            // A regular file returns less than asked only at its end.
            if regularFile, chunk.count < requested { break }
            if out.count == capacity { capacity *= 2 }
        }
        return out
    }

    /// Writes all of `bytes` (write(2) again after a short write or EINTR), as swift-system's
    /// `writeAll` does, with its error typed as `Errno`. Not `writeAll` itself: it runs
    /// unspecialised generic code whose first use makes the runtime look up `Errno: Error`, a
    /// scan of every conformance record of the binary (bench/README.md, "Start-up").
    public func writeFully(_ bytes: [UInt8]) throws(Errno) {
        let failure: Errno? = bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                switch valueOrErrno({ Glibc.write(rawValue, buffer.baseAddress! + offset, buffer.count - offset) }) {
                case .success(let n) where n > 0: offset += n
                case .success: return .ioError  // wrote nothing: no progress to wait for
                case .failure(let e): return e
                }
            }
            return nil
        }
        if let failure { throw failure }
    }

    /// Flushes the file's data and metadata to the device. The corresponding C function is `fsync`.
    public func synchronize() throws(Errno) { _ = try retrying { Glibc.fsync(rawValue) } }

    /// Flushes many descriptors together: `fsync` of each on a few threads, the data
    /// writeback of `files` started first (`sync_file_range`). Returns the failures by index.
    /// The corresponding C function is `fsync`.
    public static func synchronizeAll(_ descriptors: [FileDescriptor], files: [Bool]) -> [(index: Int, error: Errno)] {
        if descriptors.count == 1 {
            do { try descriptors[0].synchronize() } catch { return [(0, error)] }
            return []
        }
        let raw = descriptors.map(\.rawValue)
        let kinds = files.map { Int32($0 ? 1 : 0) }
        var errors = [Int32](repeating: 0, count: raw.count)
        raw.withUnsafeBufferPointer { r in
            kinds.withUnsafeBufferPointer { k in
                errors.withUnsafeMutableBufferPointer { e in
                    clawflow_fsync_all(r.baseAddress, k.baseAddress, e.baseAddress, Int32(r.count))
                }
            }
        }
        return errors.enumerated().compactMap { $0.element == 0 ? nil : ($0.offset, Errno(rawValue: $0.element)) }
    }

    /// Says this process exits soon after its writes (a command, a supervisor): `synchronizeAll`
    /// then keeps at most 2 helper threads, and ends them before a detached child is forked,
    /// so that the exit need not wait for them (CSystemShims, flush.c).
    public static func flushHelpersAreShortLived() { clawflow_flush_short_lived() }

    /// Flushes every change to the filesystem this descriptor is on. The corresponding C
    /// function is `syncfs`.
    public func synchronizeFileSystem() throws(Errno) { _ = try retrying { clawflow_syncfs(rawValue) } }

    /// Takes an advisory lock on the open file; blocks unless `wait` is false.
    /// Returns false when `wait` is false and another process holds it. The corresponding C function is `flock`.
    @discardableResult
    public func lock(exclusive: Bool = true, wait: Bool = true) throws(Errno) -> Bool {
        let op = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB)
        switch valueOrErrno({ clawflow_flock(rawValue, op) }) {
        case .success: return true
        case .failure(.wouldBlock): return false
        case .failure(let e): throw e
        }
    }

    /// Releases an advisory lock. The corresponding C function is `flock`.
    public func unlock() throws(Errno) { _ = try retrying { clawflow_flock(rawValue, LOCK_UN) } }

    /// Renames `name` in this directory to `newName` in `directory`; with `.noReplace` it fails
    /// with EEXIST instead of replacing. The corresponding C function is `renameat2`.
    public func renameAt(_ name: String, to directory: FileDescriptor, _ newName: String, flags: RenameFlags = []) throws(Errno) {
        _ = try retrying { clawflow_renameat2(rawValue, name, directory.rawValue, newName, flags.rawValue) }
    }

    /// Gives the file `name` here a second name, `newName` in `directory` (no symlink is
    /// followed). The corresponding C function is `linkat`.
    public func linkAt(_ name: String, to directory: FileDescriptor, _ newName: String) throws(Errno) {
        _ = try retrying { Glibc.linkat(rawValue, name, directory.rawValue, newName, 0) }
    }

    /// Creates a symbolic link `name` here whose text is `target`. The corresponding C function is `symlinkat`.
    public func symlinkAt(_ name: String, target: String) throws(Errno) {
        _ = try retrying { Glibc.symlinkat(target, rawValue, name) }
    }

    /// Creates a symbolic link unless `name` exists; returns false when it did.
    @discardableResult
    public func symlinkAt(_ name: String, target: String, existingIsFine: Bool) throws(Errno) -> Bool {
        switch valueOrErrno({ Glibc.symlinkat(target, rawValue, name) }) {
        case .success: return true
        case .failure(.fileExists) where existingIsFine: return false
        case .failure(let e): throw e
        }
    }

    /// The text of the symbolic link `name`. The corresponding C function is `readlinkat`.
    public func readLinkAt(_ name: String) throws(Errno) -> String {
        // Scratch space left uninitialised: zeroing 4 KiB cost more than the call (an audit
        // reads one link per flow).
        let target: Result<String, Errno> = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 4096) { buf in
            valueOrErrno { Glibc.readlinkat(rawValue, name, buf.baseAddress!, buf.count) }.map { n in
                String(decoding: UnsafeBufferPointer(rebasing: buf[0..<n]), as: UTF8.self)
            }
        }
        return try target.get()
    }

    /// Creates the directory `name` here; with `existingIsFine`, an existing one is no error.
    /// The corresponding C function is `mkdirat`.
    public func makeDirectoryAt(_ name: String, permissions: mode_t = 0o700, existingIsFine: Bool = false) throws(Errno) {
        switch valueOrErrno({ Glibc.mkdirat(rawValue, name, permissions) }) {
        case .success: return
        case .failure(.fileExists) where existingIsFine: return
        case .failure(let e): throw e
        }
    }

    /// Removes the file (or, with `directory`, the empty directory) `name`. The corresponding C function is `unlinkat`.
    public func removeAt(_ name: String, directory: Bool = false) throws(Errno) {
        _ = try retrying { Glibc.unlinkat(rawValue, name, directory ? AT_REMOVEDIR : 0) }
    }

    /// The status of `name` here, not following a final symlink. The corresponding C function is `fstatat`.
    public func statusAt(_ name: String) throws(Errno) -> FileStatus {
        var st = Glibc.stat()
        _ = try retrying { Glibc.fstatat(rawValue, name, &st, AT_SYMLINK_NOFOLLOW) }
        return FileStatus(st)
    }

    /// The status of the open file. The corresponding C function is `fstat`.
    public func status() throws(Errno) -> FileStatus {
        var st = Glibc.stat()
        _ = try retrying { Glibc.fstat(rawValue, &st) }
        return FileStatus(st)
    }

    /// The entries of this directory, without `.` and `..`, read from the start. By default
    /// through a descriptor of its own (`openat(".")`): a directory offset belongs to the open
    /// file, so two threads listing one shared descriptor would each get part of the other's
    /// listing. `rewind: false` reads this descriptor itself, for one just opened and not shared.
    /// `hiddenOnly` lists only the names beginning with `.` (temp files and markers), without
    /// making the others into strings. The corresponding C function is `getdents64`.
    public func entries(rewind: Bool = true, hiddenOnly: Bool = false) throws(Errno) -> [DirectoryEntry] {
        if rewind {
            let own = try openAt(".", .readOnly, options: .directory)
            defer { own.closeQuietly() }
            return try own.entries(rewind: false, hiddenOnly: hiddenOnly)
        }
        var out: [DirectoryEntry] = []
        try forEachRecord(bufferSize: 32_768) { name, type in
            if hiddenOnly, name[0] != UInt8(ascii: ".") { return true }
            let name = String(decoding: name, as: UTF8.self)
            if name != "." && name != ".." { out.append(DirectoryEntry(name: name, kind: FileKind(direntType: type))) }
            return true
        }
        return out
    }

    /// Whether this directory holds a name not beginning with `.`, read from the start (the
    /// descriptor as `entries` takes it); it stops at the first such name and makes no
    /// strings, so a directory of many entries costs one small `getdents64`.
    public func hasVisibleEntry(rewind: Bool = true) throws(Errno) -> Bool {
        if rewind {
            let own = try openAt(".", .readOnly, options: .directory)
            defer { own.closeQuietly() }
            return try own.hasVisibleEntry(rewind: false)
        }
        var found = false
        try forEachRecord(bufferSize: 1_024) { name, _ in
            found = name[0] != UInt8(ascii: ".")
            return !found
        }
        return found
    }

    /// Reads this descriptor's directory records to the end, or until `body` returns false,
    /// handing `body` each name's bytes (without the NUL) and its `d_type`.
    private func forEachRecord(bufferSize: Int, _ body: (UnsafeRawBufferPointer, UInt8) -> Bool) throws(Errno) {
        // Not zero-filled: the kernel writes the records it reports, and reading many small
        // directories (a spool of 100,000 flows lists 200,000) must not clear 32 KiB each time.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let n = try retrying { clawflow_getdents64(rawValue, buffer.baseAddress!, UInt(buffer.count)) }
            if n == 0 { return }
            let raw = UnsafeRawBufferPointer(buffer)
            var offset = 0
            while offset < n {
                // struct linux_dirent64: d_ino u64, d_off s64, d_reclen u16, d_type u8, d_name[].
                let reclen = Int(raw.loadUnaligned(fromByteOffset: offset + 16, as: UInt16.self))
                let nameStart = offset + 19
                var nameEnd = nameStart
                while nameEnd < offset + reclen, raw[nameEnd] != 0 { nameEnd += 1 }
                guard body(UnsafeRawBufferPointer(rebasing: raw[nameStart..<nameEnd]), raw[offset + 18]) else { return }
                offset += reclen
            }
        }
    }

    /// Changes the permission bits. The corresponding C function is `fchmod`.
    public func setPermissions(_ mode: mode_t) throws(Errno) { _ = try retrying { Glibc.fchmod(rawValue, mode) } }

    /// Changes the owning group. The corresponding C function is `fchown`.
    public func setGroup(_ group: gid_t) throws(Errno) { _ = try retrying { Glibc.fchown(rawValue, uid_t.max, group) } }

    /// Closes the descriptor, ignoring errors (used on paths that already failed).
    public func closeQuietly() { Glibc.close(rawValue) }
}
