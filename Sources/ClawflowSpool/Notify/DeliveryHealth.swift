import ClawflowModel
import Glibc
import SystemPackage

// What fsck and audit say about `notify/` and `hooks/` (spool-layout.md, "Notifications").
// Every state a crash can leave there is a delivery file in one of its statuses (pending,
// started, retrying), a temp file of a writer that died, or a delivery whose write the crash
// undid; none of them is a finding.

extension Spool {
    /// fsck: checks every file in `notify/` and `notify/failed/` is a delivery clawflow wrote
    /// (findings otherwise); temp files of writers that are gone and deliveries of undone
    /// writes are notes.
    func checkDeliveries(into report: inout FsckReport) {
        for (directory, failed) in [(SpoolDirectory.notify, false), (.failedNotify, true)] {
            guard let dir = try? rootFD.openDirectoryAt(directory.rawValue) else { continue }
            defer { dir.closeQuietly() }
            for entry in (try? dir.entries()) ?? [] {
                let path = self.path(directory).appending(entry.name)
                if !failed, entry.name == "failed" { continue }
                if let pid = Layout.tempWriterPid(entry.name) {
                    if !writerMayRun(pid, entry: entry.name, in: dir) {
                        let what =
                            !failed && Layout.deliveryId(fromTemp: entry.name) != nil
                            ? "a delivery's temp file left by an interrupted write; the next deliverer (or --repair) renames it into place if its record stands, else removes it"
                            : "a temp file left by an interrupted write"
                        report.notes.append(FsckFinding(code: "temp_debris", path: path.string, message: what))
                    }
                    continue
                }
                guard Layout.deliveryId(fromFile: entry.name) != nil else {
                    report.findings.append(
                        FsckFinding(code: "unexpected_entry", path: path.string, message: "\(path) is not a delivery (its name is not <deliveryId>.json)"))
                    continue
                }
                let read: (delivery: Delivery, owner: uid_t)?
                do { read = try readDelivery(entry.name, failed: failed) } catch {
                    report.findings.append(FsckFinding(code: "unparseable_record", path: path.string, message: error.message))
                    continue
                }
                if let d = read?.delivery, !failed, !deliveryStands(d) {
                    report.notes.append(
                        FsckFinding(
                            code: "undone_delivery", path: path.string,
                            message: "the write that recorded this notification was undone by a crash; the next deliverer removes it"))
                }
            }
        }
    }

    /// fsck --repair: renames into place the deliveries a crash left as temp files whose
    /// records stand (`adoptOrphans`), removes the other temp files of gone writers, and the
    /// deliveries of undone writes.
    func repairDeliveries(into report: inout FsckReport) {
        let (adopted, removed) = adoptOrphans()
        for id in adopted { report.repairs.append("renamed the notification \(id) into place: a crash had left it as a temp file") }
        for name in removed { report.repairs.append("removed the temp file \(path(.notify).appending(name))") }
        guard let dir = try? rootFD.openDirectoryAt(SpoolDirectory.notify.rawValue) else { return }
        defer { dir.closeQuietly() }
        var changed = false
        for entry in (try? dir.entries()) ?? [] {
            if let pid = Layout.tempWriterPid(entry.name) {
                guard Layout.deliveryId(fromTemp: entry.name) == nil, !writerMayRun(pid, entry: entry.name, in: dir), (try? dir.removeAt(entry.name)) != nil
                else { continue }
                report.repairs.append("removed the temp file \(path(.notify).appending(entry.name))")
                changed = true
            } else if Layout.deliveryId(fromFile: entry.name) != nil, let d = try? readDelivery(entry.name)?.delivery, !deliveryStands(d) {
                guard (try? dir.removeAt(entry.name)) != nil else { continue }
                report.repairs.append("removed the notification \(d.deliveryId), whose write a crash undid")
                changed = true
            }
        }
        if changed { try? dir.synchronize() }
    }

    /// audit: deliveries pending longer than the threshold (`notify_pending`, warn), those that
    /// failed for good (`notify_failed`, error), files there that are not deliveries
    /// (`unparseable_record`), and files in `hooks/` that are not run (`hook_ignored`, warn).
    func deliveryFindings(now: Timestamp, thresholds: AuditThresholds) -> [AuditFinding] {
        var out: [AuditFinding] = []
        for (directory, failed) in [(SpoolDirectory.notify, false), (.failedNotify, true)] {
            guard let dir = try? rootFD.openDirectoryAt(directory.rawValue) else { continue }
            defer { dir.closeQuietly() }
            for entry in (try? dir.entries()) ?? [] where Layout.deliveryId(fromFile: entry.name) != nil {
                let path = self.path(directory).appending(entry.name)
                let read: (delivery: Delivery, owner: uid_t)?
                do { read = try readDelivery(entry.name, failed: failed) } catch {
                    out.append(
                        AuditFinding(
                            .error, "unparseable_record", kind: "spool", id: entry.name, path: path.string, message: error.message,
                            ageSeconds: age(of: path, now: now)))
                    continue
                }
                guard let (d, owner) = read else { continue }
                let age = d.createdAt.map { (now.milliseconds - $0.milliseconds) / 1000 } ?? self.age(of: path, now: now)
                let subject = d.taskId.map { "task \($0)" } ?? "flow \(d.flowId)"
                var why = ""
                if let e = d.lastError {
                    let hook = e["hook"]?.stringValue ?? "?"
                    let how =
                        e["timedOut"]?.boolValue == true
                        ? "timed out"
                        : e["exitCode"]?.intValue.map { "exited with \($0)" } ?? e["signal"]?.stringValue.map { "was killed by \($0)" } ?? "failed"
                    why = "; \(hook) \(how)" + (e["stderr"]?.stringValue.map { ": \(sanitized($0))" } ?? "")
                }
                if failed {
                    out.append(
                        AuditFinding(
                            .error, "notify_failed", kind: "spool", id: d.deliveryId, path: path.string,
                            message: "the notification of \(subject) becoming \(d.to) was not delivered after \(d.attempts) runs\(why)", ageSeconds: age))
                } else if age >= thresholds.notifyPending {
                    let whose = owner == geteuid() ? "" : " (written by uid \(owner); only that user's clawflow delivers it)"
                    out.append(
                        AuditFinding(
                            .warn, "notify_pending", kind: "spool", id: d.deliveryId, path: path.string,
                            message: "the notification of \(subject) becoming \(d.to) is \(d.status.rawValue) after \(d.attempts) runs\(why)\(whose)",
                            ageSeconds: age))
                }
            }
        }
        for ignored in spoolHooks().ignored {
            let path = root.appending(Layout.hooksDirectory).appending(ignored.name)
            out.append(
                AuditFinding(
                    .warn, "hook_ignored", kind: "spool", id: ignored.name, path: path.string,
                    message: "\(path) is not run as a hook: it \(ignored.reason)", ageSeconds: self.age(of: path, now: now)))
        }
        return out
    }
}
