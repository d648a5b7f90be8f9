"""Model selection: which of an app's linked models answers a query (the Clipper paper's selection layer).

A policy is a :class:`~.policy.SelectionPolicy` registered under the ``clipper_deploy.selection_policies`` entry-point
group; the built-ins (:mod:`.builtins`) are registered through the same group.
"""
