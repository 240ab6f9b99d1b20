import ArgumentParser
import ClawflowModel
import ClawflowSpool

/// `clawflow fsck`: check (and repair) the spool's invariants.
struct Fsck: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck",
        abstract: "Check the spool's invariants; with --repair, fix what can be fixed.",
        discussion: """
            Checks that every record parses, nothing but clawflow's own files sits in flow \
            directories, every owner link points at the flow the lookup rule picks, the indexes \
            are complete, and mirrored flows agree with their tasks. Exits 1 with a list of \
            findings. Leftovers of interrupted writes (temp files, unfinished flows in tmp/) \
            are notes: no reader sees them, and --repair removes them.

            --repair removes debris of dead writers, rebuilds indexes and owner links, re-derives \
            flow state, and moves planted files (symlinks, FIFOs) to rejected/. It never changes \
            an unreadable record; it exits 0 when everything found was repaired.

            Examples:
              clawflow fsck
              clawflow fsck --repair --json
            """
    )

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Repair what can be repaired.")
    var repair = false

    func execute(_ out: Output) throws(SpoolError) {
        guard let spool = try (repair ? existingSpoolForWriting() : readSpool()) else {
            if out.json {
                out.emit(.object(["ok": true, "findings": .array([]), "notes": .array([]), "repairs": .array([])]))
            } else {
                out.print("No spool at \(global.spoolPath); nothing to check.")
            }
            return
        }
        let report = try spool.fsck(repair: repair)
        func items(_ list: [FsckFinding]) -> JSON {
            .array(list.map { .object(["code": .string($0.code), "path": .string($0.path), "message": .string($0.message)]) })
        }
        if out.json {
            out.emit(
                .object([
                    "ok": .bool(report.findings.isEmpty), "findings": items(report.findings),
                    "notes": items(report.notes), "repairs": .array(report.repairs.map(JSON.string)),
                ]))
        } else {
            for r in report.repairs { out.print("repaired: \(sanitized(r))") }
            for f in report.findings { out.print("\(f.code): \(sanitized(f.message))") }
            for n in report.notes { out.print("note: \(n.code): \(sanitized(n.path)): \(sanitized(n.message))") }
            out.print(
                report.findings.isEmpty
                    ? "fsck: \(spool.root) is consistent (\(report.notes.count) note(s))." : "fsck: \(report.findings.count) finding(s) in \(spool.root).")
        }
        if !report.findings.isEmpty {
            throw SpoolError(
                .invalidRecord,
                "fsck found \(report.findings.count) problem(s)\(repair ? " it could not repair" : "; run clawflow fsck --repair to fix what can be fixed").")
        }
    }
}
