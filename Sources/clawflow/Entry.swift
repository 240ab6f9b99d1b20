import ArgumentParser
import ClawflowCommands

/// The program's entry point: the asynchronous `main()` of the root command.
@main
extension Clawflow {}
