import ClawflowCommands

Clawflow.main()
