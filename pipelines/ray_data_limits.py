"""A fix for the first seconds of every Ray Data 2.60 execution, which run one task at a time.

Ray Data's ResourceManager takes its limits (CPUs, GPUs, object store) from the autoscaling coordinator actor. It
asks without waiting: DefaultAutoscalingCoordinator.get_reserved_resources returns the last answer it holds and
sends the question again. It asks once a second (GLOBAL_LIMITS_UPDATE_INTERVAL_S). So an execution's limits are
zero until its second or third ask, 1-2 s in. Until then the only task that runs is the one Ray Data admits so as
not to stall. On 2 CPUs, every execution (the validation pass, each epoch's stream) ran on half the machine for
its first 1-2 s: 8 one-second tasks took 5.5 s, 4.4 s with this fix; a cached epoch of the demo ran at 8.4-9.7k
rows/s, 12.9-14.4k with it (benchmarks/results/issue31-ray-data-start.md).

The fix asks again on every scheduling pass (at most every RETRY_S) while the limits are still zero; once they are
known, Ray's own cadence resumes. The coordinator itself is an actor that Ray Data starts on the first execution
(0.4 s here, which that execution would wait for): connect_ray starts it with the instance.
tests/pipelines/test_ray_data_limits.py pins the behaviour. Drop this module when Ray Data waits for its first
answer itself.
"""
from __future__ import annotations

import functools
import time

RETRY_S = 0.05


def refresh_limits_until_known() -> bool:
    """Patch Ray Data's ResourceManager in this process (once); False where its internals are not the ones this fix
    knows, which leaves Ray Data as it is: correct, only slower to start."""
    try:
        from ray.data._internal.execution.resource_manager import ResourceManager
    except ImportError:
        return False
    refresh = ResourceManager.get_global_limits
    if getattr(refresh, "refreshes_until_known", False):
        return True
    if not hasattr(ResourceManager, "GLOBAL_LIMITS_UPDATE_INTERVAL_S"):
        return False

    @functools.wraps(refresh)
    def get_global_limits(self):
        limits = refresh(self)
        if not limits.cpu and not limits.gpu:  # no answer from the coordinator yet: ask again on a next pass
            self._global_limits_last_update_time = time.time() - self.GLOBAL_LIMITS_UPDATE_INTERVAL_S + RETRY_S
        return limits

    get_global_limits.refreshes_until_known = True
    ResourceManager.get_global_limits = get_global_limits
    return True


def start_coordinator() -> None:
    """Start Ray Data's autoscaling coordinator actor now, without waiting for it, so that its process is up by the
    first execution (a detached actor: on a cluster it is usually up already)."""
    try:
        from ray.data._internal.cluster_autoscaler import get_or_create_autoscaling_coordinator

        get_or_create_autoscaling_coordinator()
    except Exception:  # only a head start: Ray Data starts it on its first execution anyway
        return
