import CSystemShims
import ClawflowModel
import Glibc
import Synchronization
import SystemPackage

/// Whether a filesystem writes its metadata back in order (spool-layout.md, "Writing").
///
/// With a journal (ext4's default), a log or copy-on-write (XFS, Btrfs, ZFS), a change is
/// durable as a whole: the `fsync` of a directory makes its new entries durable with the
/// inodes they name, and a name removed from a directory cannot outlive its inode on disk.
/// An ext4 made without a journal (`mkfs.ext4 -O ^has_journal`, ext2) writes directory
/// blocks, inodes and bitmaps back independently, and measured power cuts there showed both
/// gaps (bench/powercut): the inode of a new symlink — which no descriptor can reach, so
/// nothing can `fsync` it — was not on disk although its directory had been flushed
/// (`e2fsck` then clears the entry, or finds it naming another file), and a name whose
/// removal was not flushed came back naming an inode that had been freed and reused by
/// another file. Writers ask this question to pay for those filesystems only.
public enum MetadataOrdering {
    /// What a filesystem promises about its metadata.
    enum Promise {
        /// Nothing: directory blocks, inodes and bitmaps are written back independently.
        case none
        /// Each change is durable as a whole (a directory's flush carries the inodes it names).
        case wholeChanges
        /// Also, changes reach the disk in the order they were made: one journal or log holds
        /// every change of the filesystem, and a flush commits it up to now (ext4 with a
        /// journal, XFS; tmpfs and ramfs keep nothing anyway). Btrfs and ZFS do not promise
        /// this: the flush of one directory logs that directory's changes only.
        case inOrder
    }

    private static let known = Mutex<[UInt64: Promise]>([:])

    /// True when the filesystem holding `fd` orders its metadata: ext4 with a journal, XFS,
    /// Btrfs, ZFS, and tmpfs and ramfs (which keep nothing across a power cut anyway).
    /// Anything else — ext4 without a journal, and filesystems not known here — is treated
    /// as unordered, which costs flushes, never safety. Decided once per filesystem.
    public static func isOrdered(_ fd: FileDescriptor) -> Bool { promise(fd) != .none }

    /// True when, on the filesystem holding `fd`, a rename made before another is never
    /// durable after it (`Promise.inOrder`): a writer need not flush between two renames to
    /// keep their order there.
    public static func keepsOrder(_ fd: FileDescriptor) -> Bool { promise(fd) == .inOrder }

    static func promise(_ fd: FileDescriptor) -> Promise {
        guard let device = try? fd.status().device else { return .none }
        if let answer = known.withLock({ $0[device] }) { return answer }
        let answer = decide(fd, device: device)
        known.withLock { $0[device] = answer }
        return answer
    }

    private static func decide(_ fd: FileDescriptor, device: UInt64) -> Promise {
        switch UInt64(truncatingIfNeeded: clawflow_fd_filesystem_magic(fd.rawValue)) {
        case 0xEF53: return ext4HasJournal(device: device) ? .inOrder : .none
        case 0x5846_5342: return .inOrder  // XFS
        case 0x9123_683E, 0x2FC1_2FC1: return .wholeChanges  // Btrfs, ZFS
        case 0x0102_1994, 0x8584_58F6: return .inOrder  // tmpfs, ramfs
        default: return .none
        }
    }

    /// ext4 says whether a mounted filesystem has a journal in
    /// `/sys/fs/ext4/<device>/journal_task` ("<none>" without one); kernels without that file
    /// have `/proc/fs/jbd2/<device>-8` for an internal journal.
    private static func ext4HasJournal(device: UInt64) -> Bool {
        let major = ((device >> 8) & 0xFFF) | ((device >> 32) & ~0xFFF)
        let minor = (device & 0xFF) | ((device >> 12) & ~0xFF)
        guard let link = try? FileDescriptor.currentDirectory.readLinkAt("/sys/dev/block/\(major):\(minor)"),
            let name = link.split(separator: "/").last.map(String.init), !name.isEmpty
        else { return false }
        if let fd = try? FileDescriptor.currentDirectory.openAt("/sys/fs/ext4/\(name)/journal_task", .readOnly) {
            defer { fd.closeQuietly() }
            guard let bytes = try? fd.readToEnd(limit: 4096) else { return false }
            let text = String(decoding: bytes, as: UTF8.self).trimmingWhitespace()
            return !text.isEmpty && text != "<none>"
        }
        return (try? FileDescriptor.currentDirectory.statusAt("/proc/fs/jbd2/\(name)-8")) != nil
    }
}
