"""The examples in examples/ run against a real server, their output checked against torch."""
