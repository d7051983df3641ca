"""Model catalog (placeholder)."""
import json
class Catalog:
    @classmethod
    def load(cls, path): return cls()
def load_claude_models(path): return {}
