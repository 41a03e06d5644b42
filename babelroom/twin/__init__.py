"""The offline twin: runs babelroom's Azure function code locally behind Azure-compatible endpoints."""
