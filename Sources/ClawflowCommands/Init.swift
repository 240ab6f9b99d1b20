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
            On an existing spool of this version it changes nothing (except the drop box's \
            group with --shared-group) and exits 0; on a spool of another version it exits 1.

            With --shared-group G, the root and incoming/ are mode 0710 and incoming/tmp and \
            incoming/new 1730, group G: members may create and rename their own drops, but not \
            list or remove anyone's. Everything else stays private (0700).

            Examples:
              clawflow init
              clawflow init --shared-group agents
              clawflow --spool /var/spool/clawflow init
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(
        name: .customLong("shared-group"),
        help: ArgumentHelp("Let members of this group drop files into incoming/ (Postfix maildrop style); everything else stays private.", valueName: "group"))
    var sharedGroup: String?

    func execute(_ out: Output) throws(SpoolError) {
        var gid: gid_t?
        if let name = sharedGroup {
            if let g = getgrnam(name) {
                gid = g.pointee.gr_gid
            } else if let n = UInt32(name) {
                gid = n
            } else {
                throw Parse.usage("Unknown group \"\(sanitized(name))\" for --shared-group.")
            }
        }
        let (spool, created) = try Spool.initialize(at: global.spoolPath, sharedGroup: gid)
        if out.json {
            out.emit(.object(["spool": .string(spool.root.string), "created": .bool(created)]))
        } else {
            out.print(created ? "Created the spool at \(spool.root)." : "The spool at \(spool.root) is ready (nothing changed).")
        }
    }
}
