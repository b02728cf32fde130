"""The ``meshauthz`` command line. Each command is thin: it parses flags,
calls the library and prints."""
