"""Running the program: the supervisor loop, the child process, and the bootstrap
that runs inside the child."""
