"""Every render is a job: a store of jobs (SQLite under the facetalk home), workers that
run them, and the outputs, sidecars and logs they leave.

    from facetalk.jobs import JobStore
    store = JobStore.at_home(facetalk_home())
    job = store.submit(request_dict)          # a worker (`facetalk worker`) runs it

The store loads with this package; the runner (facetalk.jobs.runner: execute,
run_in_process, run_job) and workers (facetalk.jobs.worker) load the pipeline, so they are
imported from their modules, or through the lazy names below. facetalk.jobs.batch makes
many jobs from a manifest (`facetalk batch`); facetalk.jobs.ray_executor runs jobs as Ray
tasks (`--ray ADDRESS`).
"""

from .store import FINAL_STATES, Job, JobError, JobState, JobStore

_LAZY = {
    "execute": "runner",
    "run_in_process": "runner",
    "run_job": "runner",
    "prepare_request": "runner",
    "JobCache": "runner",
    "Worker": "worker",
    "Pool": "worker",
    "Batch": "batch",
    "run_batch": "batch",
    "RayWorker": "ray_executor",  # ray itself is imported only when a RayWorker runs
}
__all__ = ["FINAL_STATES", "Batch", "Job", "JobCache", "JobError", "JobState", "JobStore", "Pool", "RayWorker", "Worker",
           "execute", "prepare_request", "run_batch", "run_in_process", "run_job"]


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'facetalk.jobs' has no attribute {name!r}")
