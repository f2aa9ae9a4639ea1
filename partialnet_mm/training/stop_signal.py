"""A signal from the cluster (Slurm's preemption SIGTERM, ``srun --signal=USR1@T`` ahead of
the time limit) turned into a request to stop at the next iteration boundary."""
import signal
from typing import Dict, Optional, Sequence

# The exit code of a run stopped by a signal after its checkpoint: sysexits' EX_TEMPFAIL ("try
# again later"). tools/slurm_train.sh requeues the job on it; tools/dist_train.sh returns it.
PREEMPTED_EXIT_CODE = 75
STOP_SIGNALS = ('SIGTERM', 'SIGUSR1')


def any_rank(flag: bool) -> bool:
    """``flag`` of this rank or'ed with every other rank's (one all_reduce when distributed),
    so that all ranks take the same branch."""
    from mmengine.dist import all_reduce, get_world_size
    if get_world_size() == 1:
        return flag
    import torch
    value = torch.tensor([int(flag)])
    all_reduce(value, op='max')
    return bool(value.item())


def signal_numbers(names: Sequence[str]) -> Dict[str, int]:
    """``{name: number}``; a ValueError naming an unknown signal."""
    known = {s.name: int(s) for s in signal.Signals}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f'unknown signal(s) {unknown}; e.g. {list(STOP_SIGNALS)}')
    return {n: known[n] for n in names}


class StopSignal:
    """While installed, the named signals only record that they came (the first one's name);
    :meth:`requested` asks every rank of a distributed run, so that all of them stop after
    the same iteration (a rank that stopped alone would leave the others waiting)."""

    def __init__(self, names: Sequence[str] = STOP_SIGNALS):
        self.numbers = signal_numbers(names)
        self.received: Optional[str] = None
        self._previous: Dict[int, object] = {}

    def install(self) -> None:
        for number in self.numbers.values():
            self._previous[number] = signal.signal(number, self._handle)

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def uninstall(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number, frame) -> None:
        if self.received is None:
            self.received = signal.Signals(number).name

    def requested(self) -> Optional[str]:
        """The signal's name when this rank or any other received one, else None."""
        if any_rank(self.received is not None) and self.received is None:
            return 'a stop signal on another rank'
        return self.received
