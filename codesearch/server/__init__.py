"""The long-lived front ends: the socket server, its client and protocol, and MCP."""
