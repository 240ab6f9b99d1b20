import ArgumentParser
import ClawflowModel
import ClawflowSpool

/// `clawflow flows create`: a managed flow for an external controller.
struct FlowsCreate: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a managed flow for an external controller; prints its id.",
        discussion: """
            The flow starts queued (running with --running) at revision 0. Its controller links \
            tasks to it with `clawflow tasks add <flow>` and drives its status itself.

            Example:
              clawflow flows create --owner session-1 --goal "nightly report" \\
                  --controller my-scheduler --running
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("The owner key (the session that owns the job).", valueName: "key"))
    var owner: String

    @Option(help: ArgumentHelp("What the job is for.", valueName: "text"))
    var goal: String

    @Option(help: ArgumentHelp("The controller's id.", valueName: "id"))
    var controller: String

    @Flag(help: "Start in running instead of queued.")
    var running = false

    @Option(help: ArgumentHelp("The current step's name.", valueName: "name"))
    var step: String?

    @Option(name: .customLong("state-json"), help: ArgumentHelp("The controller's state, any JSON value.", valueName: "json"))
    var stateJson: String?

    func execute(_ out: Output) throws(SpoolError) {
        let key = try Parse.ownerKey(owner)
        let goalText = try Parse.text(goal, option: "--goal")
        let controllerId = controller.trimmingWhitespace()
        guard !controllerId.isEmpty else { throw Parse.usage("--controller must not be empty.") }
        let state = try stateJson.map { (s) throws(SpoolError) in try Parse.json(s, option: "--state-json") }
        let snap = try writeSpool().createManagedFlow(
            ownerKey: key, goal: goalText, controllerId: controllerId, running: running, step: step, stateJson: state, source: "cli")
        if out.json { out.emit(Render.flow(snap)) } else { out.print(snap.flow.flowId) }
    }
}
