"""The official x402 Python SDK's side of the MCP interoperability tests: an ``x402.mcp`` tool server
and an ``x402.mcp`` paying client, configured for a local chain."""
