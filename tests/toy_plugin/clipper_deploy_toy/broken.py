"""A plugin entry point that fails to import: the others must keep working."""

raise ImportError("clipper_deploy_toy.broken needs a framework that is not installed")
