"""The command line: commands, the terminal, and the one printer of answers."""
