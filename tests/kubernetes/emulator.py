"""kmock, the emulated Kubernetes API server, run on a thread of its own for the sync official client."""

import asyncio
import contextlib
import threading

RESOURCES = ["v1/pods", "v1/services", "v1/configmaps", "v1/secrets", "v1/serviceaccounts", "v1/nodes",
             "apps/v1/deployments", "rbac.authorization.k8s.io/v1/roles", "rbac.authorization.k8s.io/v1/rolebindings"]


@contextlib.contextmanager
def start_emulator(host="127.0.0.1"):
    """Yields {"url", "api" (an official ApiClient), "emulator", "loop"}; listens on ``host``."""
    import kmock
    from kmock._internal.apps import Server
    from kubernetes import client

    ready, box = threading.Event(), {}

    def run():
        async def main():
            async with kmock.KubernetesEmulator() as emulator, Server(emulator, host=host) as server:
                for resource in RESOURCES:  # listable before the first object of the kind exists
                    emulator.resources[resource] = {}
                box.update(emulator=emulator, url=f"http://127.0.0.1:{server.port}", port=server.port,
                           loop=asyncio.get_running_loop(), stop=asyncio.Event())
                ready.set()
                await box["stop"].wait()
        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30), "kmock did not start"
    cfg = client.Configuration()
    cfg.host = box["url"]
    api = client.ApiClient(cfg)
    core = client.CoreV1Api(api)
    # kmock 0.8 cannot parse /api/v1/namespaces (cluster-scoped "namespaces" collides with its path scheme):
    # an existing namespace is served as a canned reply, and the create path is not covered here.
    react(box, "GET /api/v1/namespaces/default",
          {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}, "status": {"phase": "Active"}})
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
                      "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.7"},
                                               {"type": "ExternalIP", "address": "203.0.113.7"}]}})
    box["api"] = api
    try:
        yield box
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)


def react(kube, request, payload):
    """Add a canned reply to the emulator, from its own event loop."""
    done = threading.Event()

    def add():
        kube["emulator"][request] << payload
        done.set()

    kube["loop"].call_soon_threadsafe(add)
    assert done.wait(5)
