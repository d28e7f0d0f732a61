"""A program's own sitecustomize, which kvscope's site hook must still run."""
import os

os.environ["CHAINED_SITECUSTOMIZE"] = "ran"
