# Edit me while `relaunch run -- python examples/hello/app.py` runs.
MESSAGE = "Hello from relaunch!"
