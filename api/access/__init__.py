"""Who is asking, and what they may see and do: API keys, roles, read tokens, audit, rate limits."""
