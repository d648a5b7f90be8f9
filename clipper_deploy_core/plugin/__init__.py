"""Plugin machinery: hook specifications, discovery and model-type dispatch."""

from .dispatch import select_plugin
from .hookspecs import HOOK_API_VERSION, hookimpl, hookspec
from .manager import ENTRY_POINT_GROUP, PluginInfo, PluginLoadWarning, PluginRegistry, get_registry

__all__ = ["ENTRY_POINT_GROUP", "HOOK_API_VERSION", "PluginInfo", "PluginLoadWarning", "PluginRegistry",
           "get_registry", "hookimpl", "hookspec", "select_plugin"]
