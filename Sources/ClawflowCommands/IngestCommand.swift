import ArgumentParser
import ClawflowModel
import ClawflowSpool

/// `clawflow ingest`: one pass over the drop box, without a watcher.
struct IngestCommand: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Apply the drops waiting in incoming/new once, then exit.",
        discussion: """
            Each drop is applied exactly once through the normal write path and deleted; a \
            drop that cannot be accepted is moved to rejected/ with a .reason file. Exits 0 \
            even when it rejected drops, and says how many.

            Example (another program reports a task):
              printf '{"kind":"task","ownerKey":"s1","runtime":"cron","label":"backup"}' \\
                  > "$SPOOL/incoming/tmp/job-1.json"
              mv "$SPOOL/incoming/tmp/job-1.json" "$SPOOL/incoming/new/"
              clawflow ingest
            """
    )

    @OptionGroup var global: GlobalOptions

    func execute(_ out: Output) throws(SpoolError) {
        // A directory that has drops waiting but no spool yet (another program made
        // incoming/new first) becomes a spool, as `watch` makes it.
        var existing = try existingSpoolForWriting()
        if existing == nil, Spool.dropsWaiting(at: global.spoolPath) { existing = try writeSpool() }
        guard let spool = existing else {
            if out.json {
                out.emit(.object(["applied": .int(0), "repeats": .int(0), "rejected": .int(0), "waiting": .int(0), "recovered": .int(0)]))
            } else {
                out.print("Nothing to ingest: there is no spool at \(global.spoolPath).")
            }
            return
        }
        let r = try spool.ingest()
        if out.json {
            out.emit(
                .object([
                    "applied": .int(r.applied), "repeats": .int(r.repeats), "rejected": .int(r.rejected), "waiting": .int(r.waiting),
                    "recovered": .int(r.recovered),
                ]))
        } else {
            var line = "Applied \(r.applied) drop\(r.applied == 1 ? "" : "s")"
            if r.recovered > 0 { line += " (\(r.recovered) left claimed by an interrupted pass)" }
            line += ", rejected \(r.rejected)"
            if r.rejected > 0 { line += " (see \(spool.path(.rejected)))" }
            line += ", \(r.repeats) repeat\(r.repeats == 1 ? "" : "s"), \(r.waiting) waiting for their task."
            out.print(line)
        }
    }
}
