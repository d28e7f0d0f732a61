import ctypes

ALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p)
FREE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p)
INIT = ctypes.CFUNCTYPE(None, ctypes.c_int)

current = None


class _Native:
    """torch._C._cuda_CUDAAllocator: the optional setters take addresses."""

    def __init__(self):
        self.set = {}

    def set_init_fn(self, address):
        self.set["set_init_fn"] = address

    def set_reset_fn(self, address):
        self.set["set_reset_fn"] = address

    def set_memory_fraction_fn(self, address):
        self.set["set_memory_fraction_fn"] = address

    def set_record_stream_fn(self, address):
        self.set["set_record_stream_fn"] = address


class CUDAPluggableAllocator:
    def __init__(self, path, alloc_fn_name, free_fn_name):
        lib = ctypes.CDLL(path)
        self.path = path
        self.alloc = ALLOC(ctypes.cast(getattr(lib, alloc_fn_name), ctypes.c_void_p).value)
        self.free = FREE(ctypes.cast(getattr(lib, free_fn_name), ctypes.c_void_p).value)
        self.lib = lib
        self._native = _Native()

    def allocator(self):
        return self._native


def change_current_allocator(allocator):
    global current
    current = allocator
    init = allocator._native.set.get("set_init_fn")
    if init:
        INIT(init)(1)
