"""The `s4al` command line and the embedded runner. It uses service/ and worker/; nothing imports it."""
