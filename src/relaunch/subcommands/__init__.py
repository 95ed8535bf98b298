"""One module per `relaunch` subcommand (see relaunch.cli)."""
