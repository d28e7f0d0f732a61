from . import memory  # noqa: F401


class MemPool:
    def __init__(self, allocator=None):
        self.allocator = allocator
