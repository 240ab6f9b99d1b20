import ClawflowModel
import Dispatch
import Glibc
import Synchronization
import SystemPackage

/// The records one audit (or maintenance) pass read: every flow, and what could not be read.
public struct SpoolScan: Sendable {
    /// Every flow whose manifest could be read, newest first.
    public var flows: [FlowSnapshot]
    /// Manifests and task files that could not be read.
    public var unreadable: [RecordProblem]
    /// Temp files in flow directories whose writer is gone.
    public var debris: [FilePath]
}

extension Spool {
    /// Reads every flow once as stored (in parallel, each under its shared lock: maintenance
    /// plans from it, and a dry run writes nothing), and lists the temp files a writer that
    /// is gone left in the flow directories.
    func scan() throws(SpoolError) -> SpoolScan {
        let results = try mapAllFlows(withDebris: true) { (result) -> (FlowSnapshot?, [RecordProblem], [FilePath]) in
            switch result {
            case .success(let snap):
                return (snap, snap.problems, snap.debris)
            case .failure(let error):
                return (nil, [RecordProblem(path: error.path ?? self.path(.flows), message: error.message)], [])
            }
        }
        return SpoolScan(flows: results.compactMap(\.0), unreadable: results.flatMap(\.1), debris: results.flatMap(\.2))
    }

    /// Every audit finding (spec §6, `audit`): the flow and task rules of `AuditRules`,
    /// evaluated while the flows are read (in parallel; lost command tasks recorded first, as
    /// every read does; a command whose supervisor runs is never stale), then the spool's own:
    /// unreadable records, stray temp files, bad owner links, rejected drops. Sorted errors
    /// first, then oldest first.
    public func audit(now: Timestamp = Spool.now(), thresholds: AuditThresholds = AuditThresholds()) throws(SpoolError) -> [AuditFinding] {
        // The spool's own directories are listed on a thread of their own while flows/ is
        // listed and the flows are read: none of it depends on the flows. owners/ is listed
        // there once, for its temp files and for the owner check after the read.
        let side = Mutex<(owners: [DirectoryEntry]?, stray: [FilePath], findings: [AuditFinding])?>(nil)
        let sideDone = DispatchGroup()
        DispatchQueue.global().async(group: sideDone) {
            let owners = try? self.ownersFD?.entries()
            let stray = self.strayTempFiles(owners: owners)
            var found = self.deliveryFindings(now: now, thresholds: thresholds)
            for drop in self.rejectedDrops() {
                found.append(
                    AuditFinding(
                        .warn, "rejected_drops", kind: "spool", id: drop.name, path: drop.path.string,
                        message: "drop \(drop.name) was refused (\(drop.reason)); it is kept in rejected/ with a .reason file",
                        ageSeconds: (now.milliseconds - drop.refusedAt) / 1000))
            }
            side.withLock { $0 = (owners, stray, found) }
        }
        // Each flow's owner link is read beside the flow, so the owner check after the
        // parallel read has (almost) nothing left to read.
        let read: [(OwnerClaim?, [AuditFinding], [RecordProblem], [FilePath])]
        do {
            read = try flows(withDebris: true) { (result) -> (OwnerClaim?, [AuditFinding], [RecordProblem], [FilePath]) in
                switch result {
                case .success(let snap):
                    let id = snap.flow.flowId
                    let findings = AuditRules.findings(
                        flow: snap.flow, tasks: snap.tasks, now: now, thresholds: thresholds, manifest: self.flowPath(id).appending(Layout.manifest).string,
                        taskPath: { self.tasksPath(id).appending(Layout.taskFile($0)).string }, isLive: Spool.supervisorRuns)
                    return (OwnerClaim(snap.flow, readingLinkIn: self.ownersFD), findings, snap.problems, snap.debris)
                case .failure(let error):
                    return (nil, [], [RecordProblem(path: error.path ?? self.path(.flows), message: error.message)], [])
                }
            }
        } catch {
            sideDone.wait()
            throw error
        }
        let results = read
        sideDone.wait()
        let (ownerEntries, stray, sideFindings) = side.withLock { $0! }
        let unreadable = results.flatMap(\.2)
        let unreadableFlows = Set(
            unreadable.compactMap { problem -> String? in
                let parts = problem.path.components.map(\.string)
                guard let i = parts.lastIndex(of: SpoolDirectory.flows.rawValue), i + 1 < parts.count else { return nil }
                return parts[i + 1]
            })
        // The owner links on one side, the findings of the spool's other directories on the other.
        let spoolFindings = Mutex<[[AuditFinding]]>([[], []])
        DispatchQueue.concurrentPerform(iterations: 2) { part in
            var out: [AuditFinding] = []
            if part == 0 {
                var links = FsckReport()
                self.checkOwnerLinks(results.compactMap(\.0), unreadable: unreadableFlows, listed: ownerEntries, into: &links)
                for finding in links.findings {
                    let path = FilePath(finding.path)
                    out.append(
                        AuditFinding(
                            .error, "bad_owner_link", kind: "spool", id: path.lastComponent?.string ?? "", path: finding.path, message: finding.message,
                            ageSeconds: self.age(of: path, now: now)))
                }
            } else {
                for problem in unreadable {
                    out.append(
                        AuditFinding(
                            .error, "unparseable_record", kind: "spool", id: Spool.recordName(problem.path), path: problem.path.string,
                            message: problem.message, ageSeconds: self.age(of: problem.path, now: now)))
                }
                for path in results.flatMap(\.3) + stray {
                    out.append(
                        AuditFinding(
                            .warn, "stray_temp_file", kind: "spool", id: path.lastComponent?.string ?? "", path: path.string,
                            message: "\(path) was left by an interrupted write whose writer is gone", ageSeconds: self.age(of: path, now: now)))
                }
                out += sideFindings
            }
            spoolFindings.withLock { $0[part] = out }
        }
        return AuditFinding.sorted(results.flatMap(\.1) + spoolFindings.withLock { $0.joined() })
    }

    /// What names an unreadable record in a finding: the flow id (its directory's name) for a
    /// manifest, else the file's name.
    static func recordName(_ path: FilePath) -> String {
        let parts = path.components.map(\.string)
        if parts.last == Layout.manifest, parts.count >= 3, parts[parts.count - 3] == SpoolDirectory.flows.rawValue { return parts[parts.count - 2] }
        return parts.last ?? ""
    }

    /// Seconds since `path` was last modified (0 when it cannot be read).
    func age(of path: FilePath, now: Timestamp) -> Int64 {
        var st = stat()
        guard lstat(path.string, &st) == 0 else { return 0 }
        return (now.milliseconds - (Int64(st.st_mtim.tv_sec) * 1000 + Int64(st.st_mtim.tv_nsec) / 1_000_000)) / 1000
    }

    /// Temp files and unfinished staging directories, outside flow directories, whose writer
    /// is gone. `owners` is a listing of owners/ made already, if any.
    func strayTempFiles(owners: [DirectoryEntry]? = nil) -> [FilePath] {
        var out: [FilePath] = []
        if let tmpFD = staging.fd {
            for entry in (try? tmpFD.entries()) ?? [] {
                if let pid = Layout.stagingPid(entry.name), !writerMayRun(pid, entry: entry.name, in: tmpFD) {
                    out.append(path(.staging).appending(entry.name))
                }
            }
        }
        let directories: [(FileDescriptor?, String)] = [
            (ownersFD, SpoolDirectory.owners.rawValue), (taskIndexFD, SpoolDirectory.taskIndex.rawValue), (rootFD, ""),
            (runIndexDirectory.fd, SpoolDirectory.runIndex.rawValue), (notifyDirectory.fd, SpoolDirectory.notify.rawValue),
        ]
        for case (let fd?, let path) in directories {
            // Only hidden names can be temp files: the others (100,000 index entries in a
            // spool of 100,000 tasks) are not made into strings.
            let listed = path == SpoolDirectory.owners.rawValue ? owners ?? (try? fd.entries(hiddenOnly: true)) : (try? fd.entries(hiddenOnly: true))
            for entry in listed ?? [] {
                guard let pid = Layout.tempWriterPid(entry.name), !writerMayRun(pid, entry: entry.name, in: fd) else { continue }
                out.append(path.isEmpty ? root.appending(entry.name) : root.appending(path).appending(entry.name))
            }
        }
        return out
    }

    /// A refused drop kept in rejected/.
    struct RejectedDrop {
        var name: String
        var path: FilePath
        var reason: String
        /// When it was refused: the `at` of its `.reason` file (clawflow's own clock), else
        /// the drop's ctime (set when it was moved in), never the drop's own mtime.
        var refusedAt: Int64
    }

    /// The drops in rejected/ (not their `.reason` files), with each reason's code.
    func rejectedDrops() -> [RejectedDrop] {
        guard let dir = try? rootFD.openDirectoryAt(SpoolDirectory.rejected.rawValue) else { return [] }
        defer { dir.closeQuietly() }
        let names = ((try? dir.entries()) ?? []).map(\.name)
        return names.filter { !$0.hasSuffix(".reason") && !$0.hasPrefix(".") }.map { name in
            let path = self.path(.rejected).appending(name)
            let reasonBytes = try? DurableFile.read(in: dir, name: name + ".reason", path: path, limit: 65536)
            let reason = reasonBytes.flatMap { try? JSON.parse(bytes: $0) }?.objectValue
            let code = reason?["code"]?.stringValue ?? "no reason file"
            let refusedAt = reason?["at"]?.stringValue.flatMap(Timestamp.init(iso8601:))?.milliseconds ?? (try? dir.statusAt(name))?.changedMilliseconds ?? 0
            return RejectedDrop(name: name, path: path, reason: code, refusedAt: refusedAt)
        }
    }
}
