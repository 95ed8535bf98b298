"""Running the program: the supervisor loop and the child process (the code that runs
inside the child lives in :mod:`relaunch._inside`)."""
