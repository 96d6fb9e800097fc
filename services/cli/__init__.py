"""The `yuqing` command: the entry point, the one layer above the services (it starts and wires them)."""
