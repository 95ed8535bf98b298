"""`relaunch serve`: the held socket, the app server in the child, the error page and
browser live reload."""
