"""A stand-in for the few parts of PyTorch that kvscope's Python helper
touches, loading the allocator the way torch.cuda.memory does (dlopen the
path, look the functions up by name) so that tests can call it without a GPU."""
from . import cuda  # noqa: F401
