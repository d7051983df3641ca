"""placeholder"""
class UpstreamPool:
    def __init__(self, settings): self.settings = settings
