"""The kit for plugin authors and the project's own tests: fixtures, servers, doubles."""
