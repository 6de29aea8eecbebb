"""malloc_tuning: a pass that allocates and frees large buffers over and over reuses its
pages instead of faulting in fresh ones (what `pocket migrate verify --deep` does with
every source chunk, fragment window and joined segment). Each case runs in a process of
its own: the setting is process-wide and would outlive the test."""
import subprocess
import sys

_ROUNDS = """
import resource, sys
from storage import malloc_tuning
tuned = sys.argv[1] == "tuned"
assert not tuned or malloc_tuning.keep_freed_memory()
def round_():
    held = [bytes([i]) * (4 << 20) for i in range(16)]     # 64 MiB, every page written
    assert all(b[-1] == i for i, b in enumerate(held))
    del held
round_()                                                    # the first touch faults either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
_PAGES = 4 * (64 << 20) // 4096     # the pages of the four measured rounds


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _ROUNDS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_freed_buffers_are_reused_not_faulted_in_again():
    untuned = _faults("plain")
    assert untuned > _PAGES // 2, f"glibc kept the memory without tuning ({untuned} faults): the case proves nothing"
    tuned = _faults("tuned")
    assert tuned < _PAGES // 20, f"{tuned} page faults for buffers freed and allocated again (of {_PAGES} pages)"
