import ArgumentParser
import ClawflowCommands

/// The program's entry point: the root command's own synchronous `main()` (`Clawflow.main`).
@main
extension Clawflow {}
