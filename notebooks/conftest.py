"""Under nbval each kernel starts in notebooks/ with this process's environment: give it the repository,
and the stack that the notebooks with the default settings share (see _gateway.py); start the kernels
without the debugger."""

import os
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # for _gateway's imports of kyma and tests, as in the kernels

import _gateway  # noqa: E402  (after the repository is on the path)
import ipykernel.kernelspec  # noqa: E402

_stack: list[_gateway.Gateway] = []

# This pass's kernels: ipykernel_launcher without the debugger, which nothing uses under nbval and
# which would import debugpy in every kernel. Like ipykernel_launcher, it drops only the empty
# entry that `-c` puts first on sys.path (with PYTHONSAFEPATH there is none).
_LAUNCH = ("import sys; sys.path[:1] = [p for p in sys.path[:1] if p]; sys.modules['debugpy'] = None; "
           "from ipykernel import kernelapp; kernelapp.launch_new_instance()")


def _kernel_dict(*args, _original=ipykernel.kernelspec.get_kernel_dict, **kwargs):
    """The current environment's kernel spec (what --nbval-current-env starts), launched by _LAUNCH."""
    spec = _original(*args, **kwargs)
    argv = spec["argv"]
    if "ipykernel_launcher" in argv and argv[argv.index("ipykernel_launcher") - 1] == "-m":
        i = argv.index("ipykernel_launcher")
        spec["argv"] = [*argv[:i - 1], "-c", _LAUNCH, *argv[i + 1:]]
    return spec


ipykernel.kernelspec.get_kernel_dict = _kernel_dict


def pytest_collection_finish(session):
    """Before the first kernel starts: one stack for the pass, unless notebooks run against KYMA_BASE_URL."""
    if session.items and not os.environ.get("KYMA_BASE_URL") and not session.config.option.collectonly:
        _stack.append(_gateway.shared_stack())


def pytest_sessionfinish(session):
    """Stop the shared stack by its PIDs once the last notebook is done."""
    os.environ.pop(_gateway.SHARED_STACK, None)
    while _stack:
        _stack.pop().stop()
