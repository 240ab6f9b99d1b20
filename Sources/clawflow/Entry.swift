import ArgumentParser
import ClawflowCommands

/// The program's entry point: the synchronous `main()` of the root command.
@main
extension Clawflow {}
