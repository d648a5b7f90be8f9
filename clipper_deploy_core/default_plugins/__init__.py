"""Plugins that ship with the core and register through the same path as third-party ones."""
