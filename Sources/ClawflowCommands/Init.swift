import ArgumentParser
import ClawflowModel
import ClawflowSpool
import Glibc

/// `clawflow init`: create the spool explicitly.
struct Init: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create the spool (other commands create it on first write).",
        discussion: """
        On an existing spool of this version it changes nothing and exits 0; on a spool of \
        another version it exits 1.

        Examples:
          clawflow init
          clawflow --spool /var/spool/clawflow init
        """
    )

    @OptionGroup var global: GlobalOptions

    func execute(_ out: Output) throws(SpoolError) {
        let (spool, created) = try Spool.initialize(at: global.spoolPath, sharedGroup: nil)
        if out.json {
            out.emit(.object(["spool": .string(spool.root.string), "created": .bool(created)]))
        } else {
            out.print(created ? "Created the spool at \(spool.root)." : "The spool at \(spool.root) is ready (nothing changed).")
        }
    }
}
