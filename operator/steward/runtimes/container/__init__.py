"""The container flavor: a Docker container on the local engine (ZenML's ContainerService).

``runtime`` holds ContainerRuntime, ``config`` turns a spec into Docker's
create arguments, ``docker`` talks to the engine, ``state`` reads ``docker
inspect`` back as an Observation.
"""

from steward.runtimes.container.runtime import ContainerRuntime

__all__ = ["ContainerRuntime"]
