"""`dar mcp-proxy`: an MCP server in front of another, every `tools/call` through the
runtime; its policy file, the check of arguments against each tool's inputSchema, its
upstream connection and its command.

May import: `dar.integrations` and every layer below it.
"""
