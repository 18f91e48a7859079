"""REST routers, one per resource (the contract is ../shared/spec/api.md)."""
