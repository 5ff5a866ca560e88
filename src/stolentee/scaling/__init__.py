"""Autoscaling: the seed's scaling triggers as a policy, a controller, manifests, a simulation.

* :mod:`~stolentee.scaling.policy` — pure: samples in, replica decisions out;
* :mod:`~stolentee.scaling.sources` — samples from our own Prometheus ``/metrics`` (or memory);
* :mod:`~stolentee.scaling.controller` — the loop and its backends (``log``, ``railway``);
* :mod:`~stolentee.scaling.railway` — Railway's public GraphQL API (replica counts);
* :mod:`~stolentee.scaling.manifests` — the policy as a Kubernetes HPA and a KEDA ScaledObject;
* :mod:`~stolentee.scaling.simulate` and :mod:`~stolentee.scaling.trace` — load traces replayed
  through the policy and a queue model, priced with the cost model's price book;
* :mod:`~stolentee.cli.autoscale` — ``stolentee autoscale run | manifests | simulate``.

Like the other domain packages it imports no web framework, queue or CLI of the service.
"""
